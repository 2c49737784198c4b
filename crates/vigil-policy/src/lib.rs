//! # vigil-policy
//!
//! Vigil's least-privilege model, as pure functions (no I/O):
//!
//! - a [`PolicyConfig`] binds identities or groups to connections with a [`Scope`]: command
//!   classes, relations allowed and denied, columns denied, functions and constructs allowed by
//!   name, a row cap, read-only mode, a time window and a session length;
//! - a [`Grant`] is the live instance of a scope for one identity on one connection for a time
//!   window (from a standing policy now, from an approval later);
//! - [`decide`] checks one analysed statement text (`vigil_sql::Access`) against a session's
//!   grants: allowed if one live grant allows all of it; refused otherwise, with the rule and a
//!   reason that names objects, never values.
//!
//! ```
//! use vigil_policy::{Scope, AssumeBuiltins};
//! use vigil_sql::{Analyzer, LexOptions, StaticCatalog};
//! let scope: Scope = toml::from_str(r#"
//!     commands = ["read"]
//!     relations = ["public.t"]
//! "#).unwrap();
//! let catalog = StaticCatalog::new([], vec!["public".into()]);
//! let access = Analyzer::new(16).access("DROP TABLE t", LexOptions::default(), &catalog);
//! assert!(scope.check(&access, &AssumeBuiltins).is_err());
//! ```

pub mod approval;
pub mod bounds;
pub mod grant;
pub mod pattern;
pub mod policy;
pub mod scope;
pub mod window;

pub use approval::{ApprovalRule, PendingMode, StatementReviewRule};
pub use bounds::SessionBounds;
pub use grant::{decide, Decision, Grant, GrantSource, NotLive};
pub use pattern::{NamePattern, RelationPattern};
pub use policy::{check, validate, DeclaredIdentity, PolicyConfig, PolicyError, Problem, Severity};
pub use scope::{Allowance, AssumeBuiltins, Denial, FunctionCatalog, RowCapAction, Scope};
pub use window::{Hours, Weekday, Window, WindowError};
