//! Why the approval service refused or failed, in its own terms. Callers map the
//! [`ErrorKind`] to what their protocol says (the HTTP API: a status code).

use crate::ports::StoreFailure;
use crate::rules::ApproverRefused;
use vigil_core::AuditUnavailable;

/// What kind of refusal or failure an [`ApprovalError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The ask is incomplete or malformed.
    Invalid,
    /// The caller may not do this.
    Forbidden,
    /// No such request (or not one the caller may see).
    NotFound,
    /// The request's state does not allow it (or changed meanwhile).
    Conflict,
    /// No approval rule covers what was asked.
    NotApplicable,
    /// The store or the audit trail failed: nothing took effect.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("with the admin token, name the identity the request is for (\"identity\")")]
    AdminMustNameIdentity,
    #[error("an identity may ask only for itself")]
    OnlyForItself,
    #[error(
        "with the admin token, name the human approver you act for (\"as\", or --as on the CLI)"
    )]
    AdminMustNameApprover,
    #[error("only the admin token may act for someone else")]
    OnlyAdminActsForOthers,
    #[error("{0:?} is not a declared identity")]
    UndeclaredApprover(String),
    #[error(transparent)]
    Approver(#[from] ApproverRefused),
    #[error("no access request {0}")]
    NoSuchRequest(String),
    #[error("the policy of this request no longer needs approval (or no longer exists)")]
    NoLongerNeedsApproval,
    #[error("the request is {0}, not approved: nothing to revoke")]
    NothingToRevoke(&'static str),
    #[error("the request changed while deciding; read it again and retry")]
    ChangedWhileDeciding,
    #[error("no policy lets identity {identity:?} ask for approval on connection {connection:?}")]
    NoPolicy {
        identity: String,
        connection: String,
    },
    #[error("policy {policy:?} is not an approval-required policy that binds identity {identity:?} on connection {connection:?}")]
    NotThatPolicy {
        policy: String,
        identity: String,
        connection: String,
    },
    #[error("policy {policy:?} no longer lets {identity:?} ask for approval")]
    PolicyNoLongerApplies { policy: String, identity: String },
    #[error("the grant's policy no longer reviews statements")]
    NoLongerReviewed,
    /// The audit trail did not take the record: what it covers did not happen (fail closed).
    #[error("cannot record {what}: {source}")]
    NotRecorded {
        what: &'static str,
        source: AuditUnavailable,
    },
    #[error(transparent)]
    Store(#[from] StoreFailure),
}

impl ApprovalError {
    pub fn kind(&self) -> ErrorKind {
        use ApprovalError::*;
        match self {
            AdminMustNameIdentity | AdminMustNameApprover => ErrorKind::Invalid,
            OnlyForItself | OnlyAdminActsForOthers | UndeclaredApprover(_) | Approver(_) => {
                ErrorKind::Forbidden
            }
            NoSuchRequest(_) => ErrorKind::NotFound,
            NoLongerNeedsApproval | NothingToRevoke(_) | ChangedWhileDeciding => {
                ErrorKind::Conflict
            }
            NoPolicy { .. } | NotThatPolicy { .. } => ErrorKind::NotApplicable,
            PolicyNoLongerApplies { .. } | NoLongerReviewed | NotRecorded { .. } | Store(_) => {
                ErrorKind::Failed
            }
        }
    }
}

/// Why a wait for a decision ended without an approval to use. The message names the request
/// and says what the client does next.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotApproved {
    #[error("access request {0} no longer exists")]
    Gone(String),
    #[error("Vigil could not read access request {0}")]
    Unreadable(String),
    #[error("access request {id} was {status}; no grant was issued")]
    Ended { id: String, status: &'static str },
    #[error("access request {id} was not approved within the wait timeout; it stays pending: {retry} once it is approved")]
    TimedOut { id: String, retry: &'static str },
    #[error("access request {0} issued no grant")]
    NoGrant(String),
    #[error("the grant {grant_id} of access request {id} is gone")]
    GrantGone { id: String, grant_id: String },
    #[error("Vigil could not read the grant of access request {0}")]
    GrantUnreadable(String),
    #[error("access request {0} was approved, but its approval was used by another session (an approval runs its statement once); send the statement again")]
    UsedElsewhere(String),
    #[error("Vigil could not record the use of the approval of access request {0}, so the statement was not run")]
    UseNotRecorded(String),
}
