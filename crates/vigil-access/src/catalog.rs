//! What an analysis needs to know of a database: its relations, their columns, the constraints
//! that compare a written row with stored ones, and how an unqualified name finds its schema.
//! The gateway supplies it (it caches the catalog per connection and reloads it after DDL);
//! each dialect reads it from its server and has an in-memory implementation (PostgreSQL's:
//! `vigil_sql::StaticCatalog`).

use crate::name::QualifiedName;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The relations of one database as one session sees them.
///
/// Implementations must be cheap to query (the analysis asks once per relation named in a
/// statement, on a cache miss only) and must not do I/O.
pub trait Catalog: Send + Sync {
    /// The relation `schema.name` or, when `schema` is `None`, the first relation called `name`
    /// along the session's search path (as the server resolves it). `None`: no such relation.
    /// Names are as the server stores them (PostgreSQL's parser has already folded unquoted
    /// names).
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Arc<RelationInfo>>;

    /// Identifies what this catalog answers: two catalogs whose answers differ for any lookup
    /// must never report the same version (analyses are cached under it and shared between
    /// sessions). A digest of the content and search path does.
    fn version(&self) -> u64;

    /// The schema an unqualified `CREATE TABLE` creates in (the first schema of the search
    /// path other than the server's own and the temporary one), if known for certain.
    fn creation_schema(&self) -> Option<String> {
        None
    }

    /// This session's temporary schema (PostgreSQL's `pg_temp_3`), if it has one yet.
    fn temp_schema(&self) -> Option<String> {
        None
    }

    /// Whether the database defines a function, operator or type called `name` outside the
    /// server's own schema (the session's temporary schema included), where an unqualified
    /// `name` might resolve instead of the server's own (an overload, a search path that puts
    /// the server's schema later, a type in a temporary schema). Asked only for the names the
    /// dialect's analysis has reviewed. The default, for catalogs that do not know, is `true`:
    /// no unqualified name is trusted.
    fn shadows_builtin(&self, kind: BuiltinKind, name: &str) -> bool {
        let _ = (kind, name);
        true
    }
}

/// What kind of object a name in an expression resolves to, for [`Catalog::shadows_builtin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuiltinKind {
    Function,
    Operator,
    Type,
}

impl BuiltinKind {
    /// The kind of a one-letter code (`f`, `o`, `t`), as catalog queries report it.
    pub fn from_letter(letter: &str) -> Option<BuiltinKind> {
        match letter {
            "f" => Some(BuiltinKind::Function),
            "o" => Some(BuiltinKind::Operator),
            "t" => Some(BuiltinKind::Type),
            _ => None,
        }
    }
}

/// One relation and its columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// User columns in `attnum` order, dropped columns excluded.
    pub columns: Vec<ColumnInfo>,
    /// What a write to this relation makes the server compare with stored values: unique
    /// indexes, exclusion and check constraints, foreign keys both ways, this relation's own
    /// and those of its partitions and inheritance children (sorted). `None`: not known, and
    /// the analysis then counts every column of the relation as compared by any write to it
    /// (fail closed).
    #[serde(default)]
    pub constraints: Option<Vec<Constraint>>,
}

impl RelationInfo {
    /// The user column called `name` (exact, case-sensitive match).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A rule of the database under which a written row is compared with stored values, so that
/// whether the write succeeds tells the writer something about those values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Constraint {
    #[serde(flatten)]
    pub kind: ConstraintKind,
    /// The constraint's name, or the index's for a unique index that backs no constraint.
    pub name: String,
    /// The relation that holds it when it is not the one described: a partition or an
    /// inheritance child, whose rows a write to this relation may reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<QualifiedName>,
    /// Its columns (of the owner), by name: key columns and the columns that index expressions
    /// and partial-index predicates mention; for a check constraint, the columns it mentions;
    /// for a foreign key, the referencing columns; for `ReferencedBy`, the referenced ones.
    pub columns: Vec<String>,
}

/// What kind of comparison a [`Constraint`] makes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConstraintKind {
    /// PRIMARY KEY or UNIQUE constraint (a name `ON CONFLICT ON CONSTRAINT` can use).
    Unique,
    /// A unique index that backs no constraint (partial and expression indexes included).
    UniqueIndex,
    /// EXCLUDE constraint.
    Exclusion,
    /// CHECK constraint. One not validated (`NOT VALID`) may fail for a stored row when any
    /// column of it is updated.
    Check { validated: bool },
    /// FOREIGN KEY: writing the referencing `columns` compares them with the referenced
    /// relation's `references_columns`.
    ForeignKey {
        references: QualifiedName,
        references_columns: Vec<String>,
    },
    /// A foreign key of another relation that references this one's `columns`: deleting a row,
    /// or updating those columns, compares the stored values with `referencing`'s
    /// `referencing_columns`.
    ReferencedBy {
        referencing: QualifiedName,
        referencing_columns: Vec<String>,
    },
}

/// A column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// Its position among the relation's columns, from 1 (PostgreSQL's `attnum`).
    pub attnum: i16,
}

/// What kind of relation it is (PostgreSQL's `pg_class.relkind` letter in each variant's
/// documentation).
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
    /// Anything else.
    Other,
}
