//! What the access analysis needs to know of a database: its relations, their columns, and how
//! an unqualified name finds its schema. The gateway supplies it (it caches the catalog per
//! connection and reloads it after DDL); [`StaticCatalog`] is an in-memory implementation built
//! from the rows of [`CATALOG_QUERY`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The relations of one database as one session sees them.
///
/// Implementations must be cheap to query (the analysis asks once per relation named in a
/// statement, on a cache miss only) and must not do I/O.
pub trait Catalog: Send + Sync {
    /// The relation `schema.name` or, when `schema` is `None`, the first relation called `name`
    /// along the session's search path (as PostgreSQL resolves it). `None`: no such relation.
    /// Names are as PostgreSQL stores them (the parser has already folded unquoted names).
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Arc<RelationInfo>>;

    /// Identifies what this catalog answers: two catalogs whose answers differ for any lookup
    /// must never report the same version (analyses are cached under it and shared between
    /// sessions). [`StaticCatalog`] uses a digest of its content and search path.
    fn version(&self) -> u64;
}

/// One relation (`pg_class` row) and its columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// User columns in `attnum` order, dropped columns excluded.
    pub columns: Vec<ColumnInfo>,
}

impl RelationInfo {
    /// The user column called `name` (exact, case-sensitive match).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `name` is a column of this relation: a user column, or a system column
    /// (`ctid`, `xmin`…) of a relation that stores rows.
    pub fn has_column(&self, name: &str) -> bool {
        self.column(name).is_some() || (self.kind.has_system_columns() && is_system_column(name))
    }
}

/// System columns every heap relation has (`ctid`, `xmin`, `cmin`, `xmax`, `cmax`, `tableoid`).
pub(crate) fn is_system_column(name: &str) -> bool {
    matches!(
        name,
        "ctid" | "xmin" | "cmin" | "xmax" | "cmax" | "tableoid"
    )
}

/// A column (`pg_attribute` row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub attnum: i16,
}

/// `pg_class.relkind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// `r`
    Table,
    /// `p`
    PartitionedTable,
    /// `v`
    View,
    /// `m`
    MaterializedView,
    /// `f`
    ForeignTable,
    /// `S`
    Sequence,
    /// `i`, `I`
    Index,
    /// `c`
    CompositeType,
    /// `t`
    ToastTable,
    /// Any other letter.
    Other,
}

impl RelationKind {
    /// The kind of a `pg_class.relkind` letter.
    pub fn from_relkind(relkind: char) -> Self {
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

    fn letter(self) -> char {
        match self {
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

    fn has_system_columns(self) -> bool {
        matches!(
            self,
            RelationKind::Table
                | RelationKind::PartitionedTable
                | RelationKind::MaterializedView
                | RelationKind::ForeignTable
                | RelationKind::Sequence
                | RelationKind::ToastTable
        )
    }
}

/// The query whose rows build a [`StaticCatalog`] (with [`CatalogRow::new`]): every relation
/// the session can name, one row per column (and one row with NULL column for relations without
/// any), in the column order [`CatalogRow`] takes them. Run it, and `SELECT
/// current_schemas(true)` for the search path, on the session's own connection after login and
/// again after any DDL, `SET search_path`/`RESET`/`DISCARD ALL`, or a rollback that may undo one.
pub const CATALOG_QUERY: &str = "\
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, a.attnum::int2 \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
WHERE c.relkind <> 't' \
ORDER BY 1, 6";

/// One row of [`CATALOG_QUERY`]: a relation and one of its columns (or none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRow {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// `None` for a relation without columns (the LEFT JOIN's NULL).
    pub column: Option<(String, i16)>,
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
            kind: RelationKind::from_relkind(relkind),
            column,
        }
    }
}

/// An in-memory [`Catalog`]: relations by (schema, name), and a search path.
///
/// Unqualified names are looked up along the search path; `pg_catalog` is searched first unless
/// the path names it (as PostgreSQL does). Give the path as `current_schemas(true)` returns it,
/// which already has the session's temporary schema and `pg_catalog` where PostgreSQL searches
/// them, and no schema that does not exist.
#[derive(Clone, Debug)]
pub struct StaticCatalog {
    relations: Arc<HashMap<(String, String), Arc<RelationInfo>>>,
    search_path: Vec<String>,
    version: u64,
}

impl StaticCatalog {
    /// A catalog of the given relations (columns are sorted by `attnum`).
    pub fn new(
        relations: impl IntoIterator<Item = RelationInfo>,
        search_path: Vec<String>,
    ) -> Self {
        let relations: HashMap<_, _> = relations
            .into_iter()
            .map(|mut r| {
                r.columns.sort_by_key(|c| c.attnum);
                ((r.schema.clone(), r.name.clone()), Arc::new(r))
            })
            .collect();
        Self::with_relations(Arc::new(relations), search_path)
    }

    /// A catalog from the rows of [`CATALOG_QUERY`], in any order.
    pub fn from_rows(rows: impl IntoIterator<Item = CatalogRow>, search_path: Vec<String>) -> Self {
        let mut by_oid: HashMap<u32, RelationInfo> = HashMap::new();
        for row in rows {
            let rel = by_oid.entry(row.oid).or_insert_with(|| RelationInfo {
                oid: row.oid,
                schema: row.schema,
                name: row.name,
                kind: row.kind,
                columns: Vec::new(),
            });
            if let Some((name, attnum)) = row.column {
                rel.columns.push(ColumnInfo { name, attnum });
            }
        }
        Self::new(by_oid.into_values(), search_path)
    }

    /// The same relations under another search path (shares the relations; a new version).
    pub fn with_search_path(&self, search_path: Vec<String>) -> Self {
        Self::with_relations(Arc::clone(&self.relations), search_path)
    }

    pub fn search_path(&self) -> &[String] {
        &self.search_path
    }

    /// All relations, in no particular order.
    pub fn relations(&self) -> impl Iterator<Item = &Arc<RelationInfo>> {
        self.relations.values()
    }

    fn with_relations(
        relations: Arc<HashMap<(String, String), Arc<RelationInfo>>>,
        search_path: Vec<String>,
    ) -> Self {
        // The version is a digest of everything lookups depend on, so that equal catalogs (two
        // sessions on one database) share cached analyses and different ones never do. SHA-256:
        // relation names are chosen by clients who may create tables.
        let mut sorted: Vec<&Arc<RelationInfo>> = relations.values().collect();
        sorted.sort_by_key(|r| r.oid);
        let mut h = Sha256::new();
        let field = |h: &mut Sha256, s: &[u8]| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s);
        };
        for s in &search_path {
            field(&mut h, s.as_bytes());
        }
        h.update([0xff]);
        for r in sorted {
            h.update(r.oid.to_le_bytes());
            field(&mut h, r.schema.as_bytes());
            field(&mut h, r.name.as_bytes());
            h.update([r.kind.letter() as u8]);
            h.update((r.columns.len() as u64).to_le_bytes());
            for c in &r.columns {
                field(&mut h, c.name.as_bytes());
                h.update(c.attnum.to_le_bytes());
            }
        }
        let digest = h.finalize();
        let version = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        StaticCatalog {
            relations,
            search_path,
            version,
        }
    }
}

impl Catalog for StaticCatalog {
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Arc<RelationInfo>> {
        let get = |schema: &str| {
            self.relations
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
        assert!(t.has_column("ctid") && !t.has_column("zz"));
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
}
