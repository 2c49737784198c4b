//! # vigil-access
//!
//! The dialect-neutral description of what a text sent to a database does, and what an
//! analysis needs to know of the database to say so. A dialect's analyser fills it in
//! (PostgreSQL's is `vigil-sql`, from PostgreSQL's own parser; MySQL's will produce the same
//! model); least-privilege policy (`vigil-policy`), approvals and the gateway read it without
//! knowing any grammar.
//!
//! - [`Access`]: one analysed text, a [`StatementAccess`] per statement: its [`CommandClass`],
//!   every relation and column read or written ([`RelationAccess`], [`ColumnSet`]), the
//!   functions it calls, the stored columns its writes are compared with ([`Comparison`]),
//!   the [`Hazard`]s a policy must allow by name, the session names ([`SessionName`]) and
//!   settings ([`SettingChange`]) it changes, where its result columns come from
//!   ([`OutputOrigin`]), and what the analysis could not place ([`Unresolved`]: refuse).
//! - [`Hazard`]: what a construct does in terms every dialect shares ([`HazardKind`]: runs
//!   inline code, reads or writes a server file, changes a protected setting…), with the
//!   dialect's construct as detail ([`Construct`]: PostgreSQL's `do_block`, `copy_file`…),
//!   which is the name records carry.
//! - [`Catalog`]: what the analysis resolves names against (relations, columns, constraints,
//!   the search path), implemented by each dialect over what it reads from its server.
//!
//! It owns data and the small rules that come with it (column set unions, display of names).
//! It does no I/O, knows no grammar and decides nothing: policy does.
//!
//! ```
//! use std::sync::Arc;
//! use vigil_access::{
//!     Access, ColumnSet, CommandClass, Construct, Hazard, HazardKind, QualifiedName,
//!     RelationAccess, RelationKind, StatementAccess,
//! };
//! use vigil_core::event::StatementShape;
//!
//! // What a dialect reports for `COPY (SELECT name FROM patients) TO '/tmp/out'`.
//! let mut copy = StatementAccess::new("COPY", CommandClass::CopyOut);
//! copy.relations.push(RelationAccess {
//!     relation: QualifiedName::new(Some("public"), "patients"),
//!     oid: Some(16400),
//!     kind: Some(RelationKind::Table),
//!     read: true,
//!     write: false,
//!     ddl: false,
//!     read_columns: ColumnSet::Columns(vec!["name".into()]),
//!     write_columns: ColumnSet::default(),
//!     derived_columns: ColumnSet::default(),
//!     exposure: None,
//! });
//! copy.hazards.push(Hazard::new(HazardKind::AccessesServerFile, Construct::new("copy_file")));
//! let access = Access {
//!     shape: Arc::new(StatementShape {
//!         text: "COPY (SELECT name FROM patients) TO $1".into(),
//!         fingerprint: String::new(),
//!         commands: vec!["COPY".into()],
//!         command_classes: vec!["copy_out".into()],
//!         objects: vec!["patients".into()],
//!         parse_error: None,
//!     }),
//!     statements: vec![copy],
//!     parse_error: None,
//! };
//! assert!(access.is_complete());
//! let patients = access.statements[0].relation("public", "patients").unwrap();
//! assert!(patients.uses_column("name") && !patients.uses_column("ssn"));
//! assert_eq!(
//!     serde_json::to_string(&access.statements[0].hazards).unwrap(),
//!     r#"[{"hazard":"copy_file"}]"#
//! );
//! ```

mod catalog;
mod class;
mod columns;
mod hazard;
pub mod name;
pub mod settings;
mod statement;

pub use catalog::{
    BuiltinKind, Catalog, ColumnInfo, Constraint, ConstraintKind, RelationInfo, RelationKind,
};
pub use class::CommandClass;
pub use columns::ColumnSet;
pub use hazard::{Construct, FunctionRisk, Hazard, HazardKind};
pub use name::QualifiedName;
pub use settings::{SettingChange, SettingValue};
pub use statement::{
    Access, Comparison, OutputOrigin, RelationAccess, SessionName, StatementAccess, Unresolved,
};
