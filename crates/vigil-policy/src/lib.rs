//! # vigil-policy
//!
//! Vigil's least-privilege model, as pure functions (no I/O):
//!
//! - a [`PolicyConfig`] binds identities or groups to connections with a [`Scope`]: command
//!   classes, relations allowed and denied, columns denied, functions and constructs allowed by
//!   name, a row cap, read-only mode, a time window and a session length;
//! - a [`Grant`] is the live instance of a scope for one identity on one connection for a time
//!   window (from a standing policy now, from an approval later);
//! - [`decide`] checks one analysed statement text ([`vigil_access::Access`], the
//!   dialect-neutral access model) against a session's grants: allowed if one live grant
//!   allows all of it; refused otherwise, with the rule and a reason that names objects, never
//!   values. Constructs allowed by name ([`Allowance`]) map from the model's neutral hazard
//!   kinds in one place ([`Allowance::required_by`]).
//!
//! It depends on the access model only, never on a dialect's grammar (`vigil-sql`, which links
//! libpg_query): any dialect's analysis is decided the same way. Its tests over real
//! PostgreSQL analyses live with that dialect (`crates/vigil-sql/tests/policy_*.rs`).
//!
//! ```
//! use std::sync::Arc;
//! use vigil_access::{Access, CommandClass, StatementAccess};
//! use vigil_core::event::StatementShape;
//! use vigil_policy::{AssumeBuiltins, Scope};
//!
//! let scope: Scope = toml::from_str(r#"
//!     commands = ["read"]
//!     relations = ["public.t"]
//! "#).unwrap();
//! // What an analysis reports for `DROP TABLE t`.
//! let drop = StatementAccess::new("DROP TABLE", CommandClass::Ddl);
//! let access = Access {
//!     shape: Arc::new(StatementShape {
//!         text: "DROP TABLE t".into(),
//!         fingerprint: String::new(),
//!         commands: vec!["DROP TABLE".into()],
//!         command_classes: vec!["ddl".into()],
//!         objects: vec!["t".into()],
//!         parse_error: None,
//!     }),
//!     statements: vec![drop],
//!     parse_error: None,
//! };
//! let denial = scope.check(&access, &AssumeBuiltins).unwrap_err();
//! assert_eq!(denial.rule, "command_class");
//! ```

pub mod allowance;
pub mod approval;
pub mod bounds;
pub mod grant;
pub mod pattern;
pub mod policy;
pub mod scope;
pub mod window;

pub use allowance::Allowance;
pub use approval::{ApprovalRule, PendingMode, StatementReviewRule};
pub use bounds::SessionBounds;
pub use grant::{decide, Decision, Grant, GrantSource, NotLive};
pub use pattern::{NamePattern, RelationPattern};
pub use policy::{check, validate, DeclaredIdentity, PolicyConfig, PolicyError, Problem, Severity};
pub use scope::{AssumeBuiltins, Denial, FunctionCatalog, RowCapAction, Scope};
pub use window::{Hours, Weekday, Window, WindowError};
