//! # vigil-store
//!
//! Everything Vigil persists, one trait per concern, so that a store may keep some concerns
//! and not others and each consumer depends only on what it uses:
//!
//! | trait | keeps | used by |
//! |---|---|---|
//! | [`AuditLog`] | the audit chain: append, head, scan, pages, one row, retention's deletes | vigil-audit (writer, verify, exports, bundles, retention), `vigil policy replay` |
//! | [`SessionsIndex`] | where each session's records are (a read model the chain's appends keep) | vigil-audit's session reads, replay rotation |
//! | [`TokenStore`] | service tokens (their SHA-256) | vigil-identity |
//! | [`GrantStore`] | grants, standing and approved | the binary (standing grants, their watcher, `vigil grant`, the approvals adapter), exports |
//! | [`AccessRequestStore`] | access requests | the approvals adapter, standing grants, exports |
//! | [`StatementApprovalStore`] | approvals of held statements and their one use | the approvals adapter |
//!
//! A store implements a concern fully or not at all: there are no methods that answer "not
//! supported" at run time. The only defaults are derived reads ([`AuditLog::audit_page`],
//! [`AuditLog::audit_rows`], [`SessionsIndex::session_index`]) that a store may answer faster.
//! [`SqliteStore`], an embedded SQLite file in the data directory that needs no setup, keeps
//! them all; [`Stores`] is how the binary hands each consumer its concern's handle.
//!
//! The store knows nothing of hashing or signatures: it keeps rows exactly as given and hands them
//! back exactly as kept, so that `vigil-audit` can verify them. It refuses an append whose first
//! sequence number does not follow its head ([`StoreError::ChainConflict`]), which is what lets
//! several writers (a gateway and a CLI command) share one chain safely. Records leave the
//! chain only through [`AuditLog::delete_audit_ranges`], which retention calls after recording
//! the purge in the chain itself.
//!
//! Calls are blocking; async callers use `spawn_blocking` or a dedicated thread.
//!
//! ```
//! use vigil_store::{AuditLog, AuditRow, SqliteOptions, StoreError};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = vigil_store::open(
//!     &format!("sqlite://{}", dir.path().join("vigil.db").display()),
//!     SqliteOptions::default(),
//! )
//! .unwrap();
//! let row = AuditRow {
//!     seq: 1,
//!     at_us: 0,
//!     kind: "Checkpoint".into(),
//!     session_id: None,
//!     identity: None,
//!     connection: None,
//!     body: b"{}".to_vec(),
//!     hash: [0; 32],
//! };
//! store.append_audit(std::slice::from_ref(&row)).unwrap();
//! assert_eq!(store.audit_head().unwrap().map(|h| h.seq), Some(1));
//! // A second append of seq 1 lost the race: reload the head and renumber.
//! assert!(matches!(
//!     store.append_audit(&[row]),
//!     Err(StoreError::ChainConflict { expected: 1, found: 1 })
//! ));
//! ```

mod access_requests;
mod audit;
mod error;
mod grants;
mod sessions;
mod sqlite;
mod statement_approvals;
mod stores;
mod tokens;

pub use access_requests::{AccessRequestFilter, AccessRequestRecord, AccessRequestStore};
pub use audit::{AuditHead, AuditLog, AuditRow};
pub use error::StoreError;
pub use grants::{GrantFilter, GrantRecord, GrantStore};
pub use sessions::{SessionFilter, SessionIndex, SessionsIndex};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous, WalStats};
pub use statement_approvals::{StatementApprovalRecord, StatementApprovalStore};
pub use stores::Stores;
pub use tokens::{TokenRecord, TokenStore};

/// Opens the store a URL names: `sqlite://PATH`, `sqlite:PATH` or a plain file path.
pub fn open(url: &str, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(url.to_string()));
    }
    SqliteStore::open(std::path::Path::new(path), options)
}
