//! Sets of columns of one relation.

use serde::{Serialize, Serializer};
use std::collections::BTreeSet;

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
