//! What one text does: per statement, the relations and columns it reads and writes, the
//! functions it calls, its hazards, the session names and settings it changes, and what the
//! analysis could not place.

use crate::catalog::RelationKind;
use crate::class::CommandClass;
use crate::columns::ColumnSet;
use crate::hazard::{FunctionRisk, Hazard, HazardKind};
use crate::name::QualifiedName;
use crate::settings::SettingChange;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use vigil_core::event::StatementShape;

/// The access analysis of one text: one [`StatementAccess`] per statement, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Access {
    /// The text's shape (normalized text, fingerprint, commands…), shared with the dialect's
    /// shape analysis.
    #[serde(skip)]
    pub shape: Arc<StatementShape>,
    pub statements: Vec<StatementAccess>,
    /// Why the text could not be analysed (the server's parse error, redacted, or the
    /// analysis's own): then `statements` is empty and the text must be refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

impl Access {
    /// Whether the text was analysed and every name in it resolved: the precondition for
    /// allowing it. (Hazards and named statements still need the policy's word.)
    pub fn is_complete(&self) -> bool {
        self.parse_error.is_none() && self.statements.iter().all(|s| s.unresolved.is_empty())
    }
}

/// What one statement of a text accesses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementAccess {
    /// The dialect's command tag (`SELECT`, `INSERT`, `CREATE TABLE`…).
    pub command: String,
    pub class: CommandClass,
    /// Nothing runs (`EXPLAIN` without ANALYZE): the accesses are those of the statement it
    /// would plan, so a policy may treat the statement as read-only metadata.
    pub plan_only: bool,
    /// Every relation touched, sorted by name.
    pub relations: Vec<RelationAccess>,
    /// Every function called anywhere, as written (the dialect drops the prefix of its own
    /// schema: PostgreSQL's `pg_catalog.`). Sorted.
    pub functions: Vec<QualifiedName>,
    /// Sorted, without duplicates.
    pub hazards: Vec<Hazard>,
    /// Sorted, without duplicates. Not empty: refuse the statement.
    pub unresolved: Vec<Unresolved>,
    /// Names of the session's prepared statements and portals that the statement defines,
    /// runs or drops, in the order the server applies them (see [`SessionName`]).
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
    /// text of its shape (analysers do not share it).
    #[serde(skip)]
    pub by_position: bool,
    /// Run-time settings the statement changes (`SET`, `RESET`), with their values: policies
    /// bound some of them. An analysis with a value is not shared by shape either.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingChange>,
    /// Where each column of the rows the statement returns comes from, when the analysis
    /// knows them one by one (a `SELECT` or `VALUES` without `*`); `None` otherwise (every
    /// column may hold stored data). Masking leaves [`OutputOrigin::NoStoredData`] columns
    /// alone.
    #[serde(skip)]
    pub outputs: Option<Arc<[OutputOrigin]>>,
}

impl StatementAccess {
    /// A statement that touches nothing yet: the start of an analysis, or of a test's.
    pub fn new(command: impl Into<String>, class: CommandClass) -> Self {
        StatementAccess {
            command: command.into(),
            class,
            plan_only: false,
            relations: Vec::new(),
            functions: Vec::new(),
            hazards: Vec::new(),
            unresolved: Vec::new(),
            names: Vec::new(),
            compared: Vec::new(),
            by_position: false,
            settings: Vec::new(),
            outputs: None,
        }
    }

    /// The access to relation `schema.name`, if the statement touches it.
    pub fn relation(&self, schema: &str, name: &str) -> Option<&RelationAccess> {
        self.relations
            .iter()
            .find(|r| r.relation.schema.as_deref() == Some(schema) && r.relation.name == name)
    }

    /// The risk of calling `function` (one of [`Self::functions`]), as the analysis found it:
    /// every risky call is also a [`HazardKind::CallsRiskyFunction`] hazard.
    pub fn function_risk(&self, function: &QualifiedName) -> Option<FunctionRisk> {
        self.hazards.iter().find_map(|h| match &h.kind {
            HazardKind::CallsRiskyFunction { name, risk } if name == function => Some(*risk),
            _ => None,
        })
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
    /// What the relation exposes beyond rows a policy governs, when it is one of the server's
    /// own relations on the dialect's list (other sessions' statements, statistics values,
    /// server files, credentials…, or one not yet reviewed): a policy lets it through only
    /// when a grant names it exactly. Not part of the serialized form.
    #[serde(skip)]
    pub exposure: Option<FunctionRisk>,
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

/// Something the analysis could not place: callers refuse the statement (fail closed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "unresolved", content = "name", rename_all = "snake_case")]
pub enum Unresolved {
    /// A relation the catalog does not have (as written).
    Relation(String),
    /// A column reference no relation in scope has (as written: `ssn`, `p.ssn`).
    Column(String),
    /// A construct of the grammar the analysis does not know (its node type).
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

/// A name in the session's own namespaces that a statement defines, runs or drops.
///
/// A server keeps, per session, a namespace of prepared statements (PostgreSQL shares it
/// between SQL's `PREPARE`, `EXECUTE`, `DEALLOCATE` and the extended protocol's Parse, Bind,
/// Close) and one of portals (cursors: `DECLARE`, `FETCH`, `MOVE`, `CLOSE`, and the protocol's
/// Bind, Execute, Close). What `EXECUTE name` or `FETCH name` runs is not in its text: a
/// gateway must know what the name holds on the server, so the analysis says which names each
/// statement touches. The shapes are the literal-free text of the defining statement alone
/// (the `PREPARE …` or `DECLARE …` of a longer text), which is what the server reports for the
/// name (PostgreSQL's `pg_prepared_statements.statement`, `pg_cursors.statement`).
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

/// Where the values of one column of a statement's result may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputOrigin {
    /// Possibly stored data: masked and scanned as any value.
    MayBeStored,
    /// Only the statement's constants, its bind parameters and reviewed functions, operators
    /// and casts that read no stored data: nothing to mask.
    NoStoredData,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hazard::Construct;

    fn patients() -> RelationAccess {
        RelationAccess {
            relation: QualifiedName::new(Some("public"), "patients"),
            oid: Some(16400),
            kind: Some(RelationKind::Table),
            read: true,
            write: false,
            ddl: false,
            read_columns: ColumnSet::All,
            write_columns: ColumnSet::default(),
            derived_columns: ColumnSet::default(),
            exposure: None,
        }
    }

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
            write: true,
            read_columns: ColumnSet::Columns(vec!["id".into()]),
            write_columns: ColumnSet::Columns(vec!["phone".into()]),
            ..patients()
        };
        assert!(r.uses_column("id") && r.uses_column("phone") && !r.uses_column("ssn"));
        assert_eq!(
            r.columns(),
            ColumnSet::Columns(vec!["id".into(), "phone".into()])
        );
    }

    #[test]
    fn unresolved_names_display() {
        assert_eq!(
            Unresolved::Column("p.ssn".into()).to_string(),
            "column p.ssn"
        );
        assert_eq!(Unresolved::Relation("t".into()).to_string(), "relation t");
    }

    /// A risky function's risk is read from its hazard, by its exact name.
    #[test]
    fn function_risk_from_hazards() {
        let mut s = StatementAccess::new("SELECT", CommandClass::Read);
        let read_file = QualifiedName::new(None, "pg_read_file");
        s.functions = vec![QualifiedName::new(None, "lower"), read_file.clone()];
        s.hazards = vec![Hazard::new(
            HazardKind::CallsRiskyFunction {
                name: read_file.clone(),
                risk: FunctionRisk::FileSystem,
            },
            Construct::new("function"),
        )];
        assert_eq!(s.function_risk(&read_file), Some(FunctionRisk::FileSystem));
        assert_eq!(s.function_risk(&QualifiedName::new(None, "lower")), None);
        assert_eq!(
            s.function_risk(&QualifiedName::new(Some("x"), "pg_read_file")),
            None
        );
    }

    /// The serde form, for `vigil policy test` and policy explanations: the exposure, the
    /// shape and the outputs stay out of it.
    #[test]
    fn serializes_compactly() {
        let mut s = StatementAccess::new("SELECT", CommandClass::CopyOut);
        s.relations = vec![RelationAccess {
            exposure: Some(FunctionRisk::OtherSessions),
            ..patients()
        }];
        s.functions = vec![QualifiedName::new(None, "lower")];
        s.hazards = vec![Hazard::new(
            HazardKind::AccessesServerFile,
            Construct::new("copy_file"),
        )];
        s.unresolved = vec![Unresolved::Column("nosuch".into())];
        s.outputs = Some(Arc::from([OutputOrigin::NoStoredData]));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"command":"SELECT","class":"copy_out","plan_only":false,"relations":[{"relation":{"schema":"public","name":"patients"},"oid":16400,"kind":"table","read":true,"write":false,"ddl":false,"read_columns":"*","write_columns":[]}],"functions":[{"name":"lower"}],"hazards":[{"hazard":"copy_file"}],"unresolved":[{"unresolved":"column","name":"nosuch"}]}"#
        );
    }
}
