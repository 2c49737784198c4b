//! PostgreSQL's side of the catalog (the [`Catalog`] trait and the types it answers with are
//! `vigil-access`'s, re-exported here): [`catalog_query`], which reads relations, columns and
//! constraints from `pg_class` and friends, the rows it returns ([`CatalogRow`]), relation kinds
//! by `relkind` letter, system columns, [`StaticCatalog`] (an in-memory catalog that resolves
//! names as PostgreSQL does: `pg_catalog` first, temporary schemas), and `TextCatalog` (what
//! the statements of one text see after its earlier `CREATE TABLE`s).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use vigil_access::{BuiltinKind, QualifiedName};
pub use vigil_access::{
    Catalog, ColumnInfo, Constraint, ConstraintKind, RelationInfo, RelationKind,
};

/// The catalog as the statements of one text see it: the database's, plus the tables the
/// text's earlier statements create (`CREATE TABLE t (…); INSERT INTO t …`), as the server
/// resolves names after them. Only what is certain is added: plain tables with their column
/// list, created in a schema known for certain; anything else stays unresolved (refused).
pub(crate) struct TextCatalog<'a> {
    base: &'a dyn Catalog,
    created: Vec<Arc<RelationInfo>>,
    /// An earlier statement was DDL: it may have defined a function, operator or type (a
    /// table defines its row type) that shadows a built-in, which the base catalog cannot know.
    after_ddl: bool,
}

impl<'a> TextCatalog<'a> {
    pub(crate) fn new(base: &'a dyn Catalog) -> Self {
        TextCatalog {
            base,
            created: Vec::new(),
            after_ddl: false,
        }
    }

    /// A statement of the text was DDL: from here on no built-in name is trusted.
    pub(crate) fn ddl_ran(&mut self) {
        self.after_ddl = true;
    }

    /// Takes in what `CREATE TABLE` (a statement the text runs before later ones) creates.
    pub(crate) fn created_by(&mut self, stmt: &pg_query::protobuf::CreateStmt) {
        use pg_query::protobuf::node::Node as N;
        let Some(rv) = &stmt.relation else { return };
        if !stmt.inh_relations.is_empty()
            || stmt.partbound.is_some()
            || stmt.of_typename.is_some()
            || stmt.partspec.is_some()
        {
            return;
        }
        let mut columns = Vec::new();
        for e in &stmt.table_elts {
            match &e.node {
                Some(N::ColumnDef(c)) => columns.push(ColumnInfo {
                    name: c.colname.clone(),
                    attnum: i16::try_from(columns.len() + 1).unwrap_or(i16::MAX),
                }),
                Some(N::Constraint(_)) => {}
                // LIKE copies columns the text does not list.
                _ => return,
            }
        }
        let temp = rv.relpersistence == "t";
        let schema = if temp {
            if !(rv.schemaname.is_empty() || rv.schemaname == "pg_temp") {
                return;
            }
            self.base
                .temp_schema()
                .unwrap_or_else(|| "pg_temp".to_owned())
        } else if rv.schemaname.is_empty() {
            match self.base.creation_schema() {
                Some(s) => s,
                None => return,
            }
        } else {
            rv.schemaname.clone()
        };
        // Exists already: the CREATE fails (or, IF NOT EXISTS, does nothing).
        if self.relation(Some(&schema), &rv.relname).is_some() {
            return;
        }
        self.created.push(Arc::new(RelationInfo {
            oid: 0,
            schema,
            name: rv.relname.clone(),
            kind: RelationKind::Table,
            columns,
            // Unknown: every column counts as compared by a write (fail closed).
            constraints: None,
        }));
    }

    fn created(&self, schema: Option<&str>, name: &str, temp: bool) -> Option<Arc<RelationInfo>> {
        self.created
            .iter()
            .rev()
            .find(|r| {
                r.name == name
                    && r.schema.starts_with("pg_temp") == temp
                    && schema.is_none_or(|s| {
                        r.schema == s || (s == "pg_temp" && r.schema.starts_with("pg_temp"))
                    })
            })
            .cloned()
    }
}

impl Catalog for TextCatalog<'_> {
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Arc<RelationInfo>> {
        if self.created.is_empty() {
            return self.base.relation(schema, name);
        }
        if let Some(schema) = schema {
            let temp = schema.starts_with("pg_temp");
            return self
                .created(Some(schema), name, temp)
                .or_else(|| self.base.relation(Some(schema), name));
        }
        // Unqualified: the temporary schema first, then pg_catalog, then the search path
        // (where a table just created in its first schema comes before any other).
        if let Some(t) = self.created(None, name, true) {
            return Some(t);
        }
        let base = self.base.relation(None, name);
        if base
            .as_ref()
            .is_some_and(|b| b.schema == "pg_catalog" || b.schema.starts_with("pg_temp"))
        {
            return base;
        }
        self.created(None, name, false).or(base)
    }

    fn version(&self) -> u64 {
        self.base.version()
    }

    fn creation_schema(&self) -> Option<String> {
        self.base.creation_schema()
    }

    fn temp_schema(&self) -> Option<String> {
        self.base.temp_schema()
    }

    fn shadows_builtin(&self, kind: BuiltinKind, name: &str) -> bool {
        self.after_ddl || self.base.shadows_builtin(kind, name)
    }
}

/// Whether `name` is a column of `relation`: a user column, or a system column (`ctid`,
/// `xmin`…) of a relation that stores rows.
pub(crate) fn has_column(relation: &RelationInfo, name: &str) -> bool {
    relation.column(name).is_some() || (has_system_columns(relation.kind) && is_system_column(name))
}

/// System columns every heap relation has (`ctid`, `xmin`, `cmin`, `xmax`, `cmax`, `tableoid`).
pub(crate) fn is_system_column(name: &str) -> bool {
    matches!(
        name,
        "ctid" | "xmin" | "cmin" | "xmax" | "cmax" | "tableoid"
    )
}

fn has_system_columns(kind: RelationKind) -> bool {
    matches!(
        kind,
        RelationKind::Table
            | RelationKind::PartitionedTable
            | RelationKind::MaterializedView
            | RelationKind::ForeignTable
            | RelationKind::Sequence
            | RelationKind::ToastTable
    )
}

/// The kind of a `pg_class.relkind` letter.
pub fn relation_kind(relkind: char) -> RelationKind {
    match relkind {
        'r' => RelationKind::Table,
        'p' => RelationKind::PartitionedTable,
        'v' => RelationKind::View,
        'm' => RelationKind::MaterializedView,
        'f' => RelationKind::ForeignTable,
        'S' => RelationKind::Sequence,
        'i' | 'I' => RelationKind::Index,
        'c' => RelationKind::CompositeType,
        't' => RelationKind::ToastTable,
        _ => RelationKind::Other,
    }
}

/// The `pg_class.relkind` letter of a kind (`?` for [`RelationKind::Other`]).
fn relkind_letter(kind: RelationKind) -> char {
    match kind {
        RelationKind::Table => 'r',
        RelationKind::PartitionedTable => 'p',
        RelationKind::View => 'v',
        RelationKind::MaterializedView => 'm',
        RelationKind::ForeignTable => 'f',
        RelationKind::Sequence => 'S',
        RelationKind::Index => 'i',
        RelationKind::CompositeType => 'c',
        RelationKind::ToastTable => 't',
        RelationKind::Other => '?',
    }
}

/// The query whose rows build a [`StaticCatalog`] (with [`CatalogRow::new`] and
/// [`CatalogRow::with_constraint`]): every relation the session can name (or those `only`
/// lists), one row per column
/// (and one row with NULL column for relations without any), then one row per [`Constraint`]
/// (NULL column; the constraint as JSON, see [`constraint_from_catalog_json`]), in the column
/// order [`CatalogRow`] takes them. Run it, and `SELECT current_schemas(true)` for the search
/// path, on the session's own connection after login and again after any DDL, `SET
/// search_path`/`RESET`/`DISCARD ALL`, or a rollback that may undo one (the gateway then lists
/// only the relations whose rows may have changed).
///
/// Constraints: unique and exclusion indexes (`pg_index`: key columns, and the columns their
/// expressions and predicates mention, read from the stored expression trees), check and
/// foreign-key constraints (`pg_constraint`), each listed for its relation and for every
/// ancestor whose writes reach its rows (`pg_inherits`, recursively), foreign keys also on the
/// referenced relation (`referenced_by`).
pub fn catalog_query(only: Option<&Listed>) -> String {
    let Some(only) = only else {
        return [
            "{rels}",
            "{owners}",
            "{indexes}",
            "{constraints}",
            "{listed}",
            "{listed}",
        ]
        .iter()
        .fold(
            CATALOG_QUERY.replacen("{descendant}", ALL_DESCENDANTS, 1),
            |q, m| q.replacen(m, "", 1),
        );
    };
    let oids = |list: &mut dyn Iterator<Item = u32>| {
        let list: Vec<String> = list.map(|o| o.to_string()).collect();
        format!("'{{{}}}'::pg_catalog.oid[]", list.join(","))
    };
    let rels = oids(&mut only.relations.iter().copied());
    let ancestors = oids(&mut only.descendants.iter().map(|d| d.0));
    let descendants = oids(&mut only.descendants.iter().map(|d| d.1));
    CATALOG_QUERY
        .replacen("{rels}", &format!("rels(rel) AS (SELECT pg_catalog.unnest({rels})), "), 1)
        .replacen("{descendant}", &format!("SELECT * FROM ROWS FROM (pg_catalog.unnest({ancestors}), pg_catalog.unnest({descendants}))"), 1)
        .replacen("{owners}", "owners(owner) AS (SELECT r.rel FROM rels r UNION SELECT d.owner FROM descendant d), ", 1)
        .replacen("{indexes}", " AND i.indrelid IN (SELECT o.owner FROM owners o)", 1)
        .replacen("{constraints}", " AND CASE WHEN d.dir THEN k.confrelid ELSE k.conrelid END IN (SELECT o.owner FROM owners o)", 1)
        .replacen("{listed}", " AND c.oid IN (SELECT x.rel FROM rels x)", 1)
        .replacen("{listed}", " WHERE r.rel IN (SELECT x.rel FROM rels x)", 1)
}

/// The relations [`catalog_query`] is to list, by OID, with every inheritance descendant of
/// each, (relation, descendant) (whose constraints the relation's rows list).
#[derive(Clone, Debug, Default)]
pub struct Listed {
    pub relations: Vec<u32>,
    pub descendants: Vec<(u32, u32)>,
}

/// Every inheritance descendant of every relation, (relation, descendant).
const ALL_DESCENDANTS: &str = "\
SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i \
UNION SELECT d.rel, i.inhrelid FROM descendant d JOIN pg_catalog.pg_inherits i ON i.inhparent = d.owner";

/// [`catalog_query`]: every relation, or with the `{…}` marks, only the listed ones. The rows of
/// a listed relation are the same either way: the constraints are gathered from the listed
/// relations and their inheritance descendants, which is all a listed relation's rows show.
/// (The restricted form takes its lists as constants, without the recursion: PostgreSQL's
/// estimates of recursive queries are large enough to have them JIT-compiled, which costs
/// seconds.)
const CATALOG_QUERY: &str = "\
WITH RECURSIVE {rels}descendant(rel, owner) AS ({descendant}), \
{owners}cons(owner, kind, name, validated, cols, other, other_cols) AS MATERIALIZED ( \
SELECT i.indrelid, CASE WHEN i.indisexclusion THEN 'exclusion' WHEN k.oid IS NULL THEN 'unique_index' ELSE 'unique' END, \
coalesce(k.conname, ic.relname)::text, true, \
ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND NOT a.attisdropped AND ( \
a.attnum IN (SELECT x.a FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS x(a, n) WHERE x.n <= i.indnkeyatts) \
OR EXISTS (SELECT FROM pg_catalog.regexp_matches(coalesce(i.indexprs::text, '') || coalesce(i.indpred::text, ''), ':varattno (\\d+)', 'g') AS m \
WHERE m[1]::int2 IN (a.attnum, 0))) ORDER BY a.attnum), \
NULL::oid, NULL::text[] \
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x') \
WHERE (i.indisunique OR i.indisexclusion) AND ic.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace) \
{indexes} \
UNION ALL \
SELECT CASE WHEN d.dir THEN k.confrelid ELSE k.conrelid END, \
CASE k.contype WHEN 'c' THEN 'check' WHEN 'f' THEN CASE WHEN d.dir THEN 'referenced_by' ELSE 'foreign_key' END END, \
k.conname::text, k.convalidated, \
ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = CASE WHEN d.dir THEN k.confrelid ELSE k.conrelid END AND a.attnum = ANY (CASE WHEN d.dir THEN k.confkey ELSE k.conkey END) ORDER BY a.attnum), \
CASE WHEN d.dir THEN k.conrelid WHEN k.contype = 'f' THEN k.confrelid END, \
ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = CASE WHEN d.dir THEN k.conrelid ELSE k.confrelid END AND a.attnum = ANY (CASE WHEN d.dir THEN k.conkey ELSE k.confkey END) ORDER BY a.attnum) \
FROM pg_catalog.pg_constraint k JOIN (VALUES (false), (true)) AS d(dir) ON NOT d.dir OR k.contype = 'f' \
WHERE k.contype IN ('c', 'f') AND k.conrelid <> 0 AND k.connamespace <> 'pg_catalog'::regnamespace \
{constraints}) \
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, a.attnum::int2, NULL::text \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
WHERE c.relkind <> 't'{listed} \
UNION ALL \
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, NULL, NULL, \
pg_catalog.json_build_object('kind', k.kind, 'name', k.name, 'validated', k.validated, \
'owner', CASE WHEN k.owner <> c.oid THEN pg_catalog.json_build_array(own.nspname, oc.relname) END, \
'columns', k.cols, \
'other', CASE WHEN k.other IS NOT NULL THEN pg_catalog.json_build_array(othn.nspname, oth.relname) END, \
'other_columns', coalesce(k.other_cols, '{}'))::text \
FROM (SELECT owner AS rel, owner FROM cons GROUP BY owner UNION ALL SELECT rel, owner FROM descendant) r \
JOIN cons k ON k.owner = r.owner \
JOIN pg_catalog.pg_class c ON c.oid = r.rel JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_class oc ON oc.oid = k.owner JOIN pg_catalog.pg_namespace own ON own.oid = oc.relnamespace \
LEFT JOIN pg_catalog.pg_class oth ON oth.oid = k.other LEFT JOIN pg_catalog.pg_namespace othn ON othn.oid = oth.relnamespace{listed}";

/// One row of [`catalog_query`]: a relation and one of its columns, or one of its constraints,
/// or neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRow {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// `None` for a relation without columns (the LEFT JOIN's NULL) and for constraint rows.
    pub column: Option<(String, i16)>,
    pub constraint: Option<Constraint>,
}

impl CatalogRow {
    pub fn new(
        oid: u32,
        schema: impl Into<String>,
        name: impl Into<String>,
        relkind: char,
        column: Option<(String, i16)>,
    ) -> Self {
        CatalogRow {
            oid,
            schema: schema.into(),
            name: name.into(),
            kind: relation_kind(relkind),
            column,
            constraint: None,
        }
    }

    /// A row of a relation's constraint.
    pub fn with_constraint(
        oid: u32,
        schema: impl Into<String>,
        name: impl Into<String>,
        relkind: char,
        constraint: Constraint,
    ) -> Self {
        CatalogRow {
            constraint: Some(constraint),
            ..Self::new(oid, schema, name, relkind, None)
        }
    }
}

/// A constraint as [`catalog_query`] writes it (a JSON object).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintJson {
    kind: String,
    name: String,
    validated: bool,
    owner: Option<(String, String)>,
    columns: Vec<String>,
    other: Option<(String, String)>,
    other_columns: Vec<String>,
}

/// A constraint row of [`catalog_query`] that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable constraint in the catalog: {0}")]
pub struct ConstraintError(String);

/// Reads the constraint column of a [`catalog_query`] row.
pub fn constraint_from_catalog_json(text: &str) -> Result<Constraint, ConstraintError> {
    let c: ConstraintJson =
        serde_json::from_str(text).map_err(|e| ConstraintError(e.to_string()))?;
    let other = || {
        c.other
            .clone()
            .map(|(schema, name)| QualifiedName::new(Some(&schema), &name))
            .ok_or_else(|| ConstraintError(format!("{} has no other relation", c.name)))
    };
    let kind = match c.kind.as_str() {
        "unique" => ConstraintKind::Unique,
        "unique_index" => ConstraintKind::UniqueIndex,
        "exclusion" => ConstraintKind::Exclusion,
        "check" => ConstraintKind::Check {
            validated: c.validated,
        },
        "foreign_key" => ConstraintKind::ForeignKey {
            references: other()?,
            references_columns: c.other_columns.clone(),
        },
        "referenced_by" => ConstraintKind::ReferencedBy {
            referencing: other()?,
            referencing_columns: c.other_columns.clone(),
        },
        other => return Err(ConstraintError(format!("unknown kind {other:?}"))),
    };
    Ok(Constraint {
        kind,
        name: c.name,
        owner: c
            .owner
            .map(|(schema, name)| QualifiedName::new(Some(&schema), &name)),
        columns: c.columns,
    })
}

/// An in-memory [`Catalog`]: relations by (schema, name), and a search path.
///
/// Unqualified names are looked up along the search path; `pg_catalog` is searched first unless
/// the path names it (as PostgreSQL does). Give the path as `current_schemas(true)` returns it,
/// which already has the session's temporary schema and `pg_catalog` where PostgreSQL searches
/// them, and no schema that does not exist.
#[derive(Clone, Debug)]
pub struct StaticCatalog {
    relations: Arc<Relations>,
    search_path: Vec<String>,
    /// Reviewed built-in names the database also defines elsewhere; `None`: not known (every
    /// name may be shadowed).
    shadowing: Option<Arc<BTreeSet<(BuiltinKind, String)>>>,
    version: u64,
}

/// The relations of a [`StaticCatalog`], each with the digest of its content: computed once,
/// and shared with the catalogs made from this one by [`StaticCatalog::with_changes`]. The
/// digests sit in buckets (by OID), each with the digest of its own: a change rehashes the
/// buckets it touches, and a version hashes the buckets' digests, so that a new catalog after a
/// change costs the change, not the catalog.
#[derive(Clone, Debug)]
struct Relations {
    by_name: HashMap<(String, String), Arc<RelationInfo>>,
    buckets: Vec<Arc<Bucket>>,
}

const BUCKETS: u32 = 256;

/// Relations' digests by (OID, schema, name), and the digest of them all in that order.
#[derive(Clone, Debug)]
struct Bucket {
    digests: BTreeMap<(u32, String, String), [u8; 32]>,
    digest: [u8; 32],
}

impl Default for Relations {
    fn default() -> Self {
        let empty = Arc::new(Bucket {
            digests: BTreeMap::new(),
            digest: Sha256::digest([]).into(),
        });
        Relations {
            by_name: HashMap::new(),
            buckets: vec![empty; BUCKETS as usize],
        }
    }
}

impl Relations {
    fn bucket(&mut self, oid: u32) -> &mut Bucket {
        Arc::make_mut(&mut self.buckets[(oid % BUCKETS) as usize])
    }

    /// Adds `r` (columns sorted by `attnum`, constraints by content), in place of any relation
    /// of its name: two relations cannot share one, so that one is out of date (renamed or
    /// dropped) and is left out until read again. Call [`Self::seal`] after the changes.
    fn insert(&mut self, mut r: RelationInfo) {
        r.columns.sort_by_key(|c| c.attnum);
        if let Some(c) = r.constraints.as_mut() {
            c.sort();
            c.dedup();
        }
        let key = (r.schema.clone(), r.name.clone());
        if let Some(old) = self.by_name.get(&key) {
            if old.oid != r.oid {
                let oid = old.oid;
                self.remove(oid);
            }
        }
        let digest = digest(&r);
        self.bucket(r.oid)
            .digests
            .insert((r.oid, r.schema.clone(), r.name.clone()), digest);
        self.by_name.insert(key, Arc::new(r));
    }

    /// Takes out the relation (relations, in a hand-made catalog) with OID `oid`.
    fn remove(&mut self, oid: u32) {
        let bucket = &self.buckets[(oid % BUCKETS) as usize];
        let keys: Vec<(u32, String, String)> = bucket
            .digests
            .range((oid, String::new(), String::new())..)
            .take_while(|(k, _)| k.0 == oid)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.bucket(oid).digests.remove(&key);
            let name = (key.1, key.2);
            if self.by_name.get(&name).is_some_and(|r| r.oid == oid) {
                self.by_name.remove(&name);
            }
        }
    }

    /// Rehashes the buckets of `oids` (after their relations changed).
    fn seal(&mut self, oids: impl IntoIterator<Item = u32>) {
        let touched: BTreeSet<u32> = oids.into_iter().map(|o| o % BUCKETS).collect();
        for b in touched {
            let bucket = Arc::make_mut(&mut self.buckets[b as usize]);
            let mut h = Sha256::new();
            for d in bucket.digests.values() {
                h.update(d);
            }
            bucket.digest = h.finalize().into();
        }
    }
}

/// SHA-256 of everything a lookup of `r` answers (relation names are chosen by clients who may
/// create tables: no weaker hash).
fn digest(r: &RelationInfo) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(r.oid.to_le_bytes());
    hash_field(&mut h, r.schema.as_bytes());
    hash_field(&mut h, r.name.as_bytes());
    h.update([relkind_letter(r.kind) as u8]);
    h.update((r.columns.len() as u64).to_le_bytes());
    for c in &r.columns {
        hash_field(&mut h, c.name.as_bytes());
        h.update(c.attnum.to_le_bytes());
    }
    let constraints = serde_json::to_vec(&r.constraints).expect("serializable");
    hash_field(&mut h, &constraints);
    h.finalize().into()
}

fn hash_field(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s);
}

impl StaticCatalog {
    /// A catalog of the given relations (columns are sorted by `attnum`, constraints by their
    /// content).
    pub fn new(
        relations: impl IntoIterator<Item = RelationInfo>,
        search_path: Vec<String>,
    ) -> Self {
        let mut tables = Relations::default();
        let mut oids = Vec::new();
        for r in relations {
            oids.push(r.oid);
            tables.insert(r);
        }
        tables.seal(oids);
        Self::build(Arc::new(tables), search_path, None)
    }

    /// A catalog from the rows of [`catalog_query`], in any order (see [`Self::relations_of`]).
    pub fn from_rows(rows: impl IntoIterator<Item = CatalogRow>, search_path: Vec<String>) -> Self {
        Self::new(Self::relations_of(rows), search_path)
    }

    /// The relations the rows of [`catalog_query`] describe, in any order. The rows list every
    /// constraint: a relation without constraint rows has none, except views and foreign
    /// tables, whose writes reach constraints the catalog does not tie to them (a view's base
    /// table, INSTEAD OF triggers and rules, a remote server's): theirs are unknown.
    pub fn relations_of(rows: impl IntoIterator<Item = CatalogRow>) -> Vec<RelationInfo> {
        let mut by_oid: HashMap<u32, RelationInfo> = HashMap::new();
        for row in rows {
            let rel = by_oid.entry(row.oid).or_insert_with(|| RelationInfo {
                oid: row.oid,
                schema: row.schema,
                name: row.name,
                kind: row.kind,
                columns: Vec::new(),
                constraints: (!matches!(row.kind, RelationKind::View | RelationKind::ForeignTable))
                    .then(Vec::new),
            });
            if let Some((name, attnum)) = row.column {
                rel.columns.push(ColumnInfo { name, attnum });
            }
            if let (Some(c), Some(list)) = (row.constraint, rel.constraints.as_mut()) {
                list.push(c);
            }
        }
        by_oid.into_values().collect()
    }

    /// This catalog with the relations of the OIDs in `removed` taken out and `replaced` put in,
    /// each in place of the relation of its OID and of any other of its name: what a read of
    /// the relations that changed gives. The relations that did not change are shared, not
    /// copied or hashed again.
    pub fn with_changes(
        &self,
        removed: impl IntoIterator<Item = u32>,
        replaced: Vec<RelationInfo>,
    ) -> Self {
        let mut tables = (*self.relations).clone();
        let mut touched = Vec::new();
        for oid in removed {
            tables.remove(oid);
            touched.push(oid);
        }
        for r in &replaced {
            tables.remove(r.oid);
        }
        for r in replaced {
            touched.push(r.oid);
            // A relation of the same name it displaces changes its bucket too.
            if let Some(other) = tables.by_name.get(&(r.schema.clone(), r.name.clone())) {
                touched.push(other.oid);
            }
            tables.insert(r);
        }
        tables.seal(touched);
        Self::build(
            Arc::new(tables),
            self.search_path.clone(),
            self.shadowing.clone(),
        )
    }

    /// The same relations under another search path (shares the relations; a new version).
    pub fn with_search_path(&self, search_path: Vec<String>) -> Self {
        Self::build(
            Arc::clone(&self.relations),
            search_path,
            self.shadowing.clone(),
        )
    }

    /// The same catalog, knowing which reviewed built-in names the database also defines
    /// outside `pg_catalog` (the rows of
    /// [`shadowing_query`](crate::access::outputs::shadowing_query)): other unqualified names
    /// are PostgreSQL's own ([`Catalog::shadows_builtin`]).
    pub fn with_shadowing(&self, shadowed: BTreeSet<(BuiltinKind, String)>) -> Self {
        Self::build(
            Arc::clone(&self.relations),
            self.search_path.clone(),
            Some(Arc::new(shadowed)),
        )
    }

    pub fn search_path(&self) -> &[String] {
        &self.search_path
    }

    /// All relations, in no particular order.
    pub fn relations(&self) -> impl Iterator<Item = &Arc<RelationInfo>> {
        self.relations.by_name.values()
    }

    fn build(
        relations: Arc<Relations>,
        search_path: Vec<String>,
        shadowing: Option<Arc<BTreeSet<(BuiltinKind, String)>>>,
    ) -> Self {
        // The version is a digest of everything lookups depend on, so that equal catalogs (two
        // sessions on one database) share cached analyses and different ones never do: the
        // search path, the relations' digests (by bucket, in OID order), the shadowed names.
        let mut h = Sha256::new();
        for s in &search_path {
            hash_field(&mut h, s.as_bytes());
        }
        h.update([0xff]);
        for b in &relations.buckets {
            h.update(b.digest);
        }
        h.update([0xfe]);
        match &shadowing {
            None => h.update([0]),
            Some(names) => {
                h.update([1]);
                for (kind, name) in names.iter() {
                    h.update([*kind as u8]);
                    hash_field(&mut h, name.as_bytes());
                }
            }
        }
        let digest = h.finalize();
        let version = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        StaticCatalog {
            relations,
            search_path,
            shadowing,
            version,
        }
    }
}

impl Catalog for StaticCatalog {
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Arc<RelationInfo>> {
        let get = |schema: &str| {
            self.relations
                .by_name
                .get(&(schema.to_owned(), name.to_owned()))
                .cloned()
        };
        match schema {
            Some(schema) => get(schema),
            None => {
                let implicit =
                    (!self.search_path.iter().any(|s| s == "pg_catalog")).then_some("pg_catalog");
                implicit
                    .into_iter()
                    .chain(self.search_path.iter().map(String::as_str))
                    .find_map(get)
            }
        }
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn creation_schema(&self) -> Option<String> {
        self.search_path
            .iter()
            .find(|s| *s != "pg_catalog" && !s.starts_with("pg_temp"))
            .cloned()
    }

    fn temp_schema(&self) -> Option<String> {
        self.search_path
            .iter()
            .find(|s| s.starts_with("pg_temp_"))
            .cloned()
    }

    fn shadows_builtin(&self, kind: BuiltinKind, name: &str) -> bool {
        match &self.shadowing {
            None => true,
            // Few names, each a short string: the allocation-free scan of a small set.
            Some(names) => names.iter().any(|(k, n)| *k == kind && n == name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<CatalogRow> {
        vec![
            CatalogRow::new(2, "public", "t", 'r', Some(("b".into(), 2))),
            CatalogRow::new(2, "public", "t", 'r', Some(("a".into(), 1))),
            CatalogRow::new(3, "app", "t", 'v', Some(("x".into(), 1))),
            CatalogRow::new(4, "pg_catalog", "pg_class", 'r', Some(("oid".into(), 1))),
            CatalogRow::new(5, "public", "pg_class", 'r', None),
            CatalogRow::new(6, "public", "s", 'S', None),
        ]
    }

    /// Constraint rows as CATALOG_QUERY writes them (checked against PostgreSQL 15 by the
    /// gateway's tests, which read them from a real server).
    #[test]
    fn constraint_rows() {
        let unique = constraint_from_catalog_json(
            r#"{"kind" : "unique_index", "name" : "p_ssn", "validated" : true, "owner" : null, "columns" : ["ssn"], "other" : null, "other_columns" : []}"#,
        )
        .unwrap();
        assert_eq!(unique.kind, ConstraintKind::UniqueIndex);
        assert_eq!(
            (unique.name.as_str(), unique.owner.as_ref()),
            ("p_ssn", None)
        );
        let fk = constraint_from_catalog_json(
            r#"{"kind" : "foreign_key", "name" : "e_fk", "validated" : true, "owner" : ["public", "e_1"], "columns" : ["patient_mrn"], "other" : ["public", "p"], "other_columns" : ["mrn"]}"#,
        )
        .unwrap();
        assert_eq!(
            fk.kind,
            ConstraintKind::ForeignKey {
                references: QualifiedName::new(Some("public"), "p"),
                references_columns: vec!["mrn".into()],
            }
        );
        assert_eq!(fk.owner, Some(QualifiedName::new(Some("public"), "e_1")));
        let check = constraint_from_catalog_json(
            r#"{"kind" : "check", "name" : "nv", "validated" : false, "owner" : null, "columns" : ["phone"], "other" : null, "other_columns" : []}"#,
        )
        .unwrap();
        assert_eq!(check.kind, ConstraintKind::Check { validated: false });
        for bad in [
            "{}",
            "not json",
            r#"{"kind" : "nope", "name" : "x", "validated" : true, "owner" : null, "columns" : [], "other" : null, "other_columns" : []}"#,
            r#"{"kind" : "referenced_by", "name" : "x", "validated" : true, "owner" : null, "columns" : [], "other" : null, "other_columns" : []}"#,
        ] {
            assert!(constraint_from_catalog_json(bad).is_err(), "{bad}");
        }
        // A relation's constraints are part of the catalog's version; views' are unknown.
        let rows = |with: bool| {
            let mut r = rows();
            if with {
                r.push(CatalogRow::with_constraint(
                    2,
                    "public",
                    "t",
                    'r',
                    unique.clone(),
                ));
            }
            r
        };
        let without = StaticCatalog::from_rows(rows(false), vec!["public".into()]);
        let with = StaticCatalog::from_rows(rows(true), vec!["public".into()]);
        assert_ne!(without.version(), with.version());
        assert_eq!(
            with.relation(None, "t").unwrap().constraints,
            Some(vec![unique])
        );
        assert_eq!(
            without.relation(None, "t").unwrap().constraints,
            Some(vec![])
        );
        assert_eq!(
            without.relation(Some("app"), "t").unwrap().constraints,
            None
        );
    }

    #[test]
    fn search_path_and_pg_catalog() {
        let c = StaticCatalog::from_rows(rows(), vec!["public".into()]);
        let t = c.relation(None, "t").unwrap();
        assert_eq!((t.oid, t.kind), (2, RelationKind::Table));
        assert_eq!(
            t.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(has_column(&t, "ctid") && !has_column(&t, "zz"));
        assert_eq!(c.relation(Some("app"), "t").unwrap().oid, 3);
        // pg_catalog is searched first unless the path places it.
        assert_eq!(c.relation(None, "pg_class").unwrap().oid, 4);
        let c2 = c.with_search_path(vec!["app".into(), "public".into(), "pg_catalog".into()]);
        assert_eq!(c2.relation(None, "t").unwrap().oid, 3);
        assert_eq!(c2.relation(None, "pg_class").unwrap().oid, 5);
        assert!(c.relation(None, "nope").is_none());
        assert!(c.relation(Some("app"), "s").is_none());
        // Versions follow content and path, not construction order.
        let mut reversed = rows();
        reversed.reverse();
        let c3 = StaticCatalog::from_rows(reversed, vec!["public".into()]);
        assert_eq!(c.version(), c3.version());
        assert_ne!(c.version(), c2.version());
        let mut more = rows();
        more.push(CatalogRow::new(
            2,
            "public",
            "t",
            'r',
            Some(("c".into(), 3)),
        ));
        assert_ne!(
            StaticCatalog::from_rows(more, vec!["public".into()]).version(),
            c.version()
        );
    }

    /// A catalog changed relation by relation is the catalog built from its relations: same
    /// lookups, same version; a relation that takes another's name displaces it.
    #[test]
    fn changes_equal_a_new_catalog() {
        let path = vec!["public".to_string()];
        let all = StaticCatalog::relations_of(rows());
        let c = StaticCatalog::from_rows(rows(), path.clone());
        let mut t = c.relation(None, "t").unwrap().as_ref().clone();
        t.columns.push(ColumnInfo {
            name: "c".into(),
            attnum: 3,
        });
        let renamed = RelationInfo {
            name: "s".into(),
            ..c.relation(Some("public"), "pg_class")
                .unwrap()
                .as_ref()
                .clone()
        };
        let changed = c.with_changes([3], vec![t.clone(), renamed.clone()]);
        let expected: Vec<RelationInfo> = all
            .into_iter()
            .filter(|r| ![2, 3, 5, 6].contains(&r.oid))
            .chain([t, renamed])
            .collect();
        let rebuilt = StaticCatalog::new(expected, path.clone());
        assert_eq!(changed.version(), rebuilt.version());
        assert_ne!(changed.version(), c.version());
        assert_eq!(changed.relation(None, "t").unwrap().columns.len(), 3);
        assert!(changed.relation(Some("app"), "t").is_none());
        // The sequence "s" (oid 6) was displaced by the relation renamed to its name.
        assert_eq!(changed.relation(None, "s").unwrap().oid, 5);
        assert_eq!(changed.relations().count(), 3);
        // Undoing the changes gives the first version back.
        let undone = changed.with_changes(
            [],
            StaticCatalog::relations_of(rows())
                .into_iter()
                .filter(|r| [2, 3, 5, 6].contains(&r.oid))
                .collect(),
        );
        assert_eq!(undone.version(), c.version());
    }

    /// What the database defines outside pg_catalog decides which unqualified names are
    /// PostgreSQL's own; it is part of the version, and survives a change of search path.
    #[test]
    fn shadowed_builtin_names() {
        let c = StaticCatalog::from_rows(rows(), vec!["public".into()]);
        assert!(
            c.shadows_builtin(BuiltinKind::Function, "now"),
            "unknown: every name"
        );
        let none = c.with_shadowing(BTreeSet::new());
        let upper = c.with_shadowing(BTreeSet::from([(BuiltinKind::Function, "upper".into())]));
        assert!(!none.shadows_builtin(BuiltinKind::Function, "upper"));
        assert!(upper.shadows_builtin(BuiltinKind::Function, "upper"));
        assert!(!upper.shadows_builtin(BuiltinKind::Type, "upper"));
        assert!(!upper.shadows_builtin(BuiltinKind::Function, "lower"));
        let versions = [c.version(), none.version(), upper.version()];
        assert!(
            versions[0] != versions[1] && versions[1] != versions[2] && versions[0] != versions[2]
        );
        let moved = upper.with_search_path(vec!["app".into()]);
        assert!(moved.shadows_builtin(BuiltinKind::Function, "upper"));
        assert_ne!(moved.version(), upper.version());
    }
}
