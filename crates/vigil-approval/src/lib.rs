//! # vigil-approval
//!
//! Just-in-time approval: an identity asks, a human decides, and the decision becomes a
//! time-bound grant (or lets one held statement run once).
//!
//! The rules, pure:
//! - [`ApprovalRule`] (a policy's `[policies.approval]`): who may approve (groups), how many
//!   approvals are needed and whether every listed group must approve, the longest grant, when
//!   approvals may be given, how long a request waits, and whether a client waits for the
//!   decision or fails at once naming the request.
//! - [`AccessRequest`] and its [`Subject`] (a session's access, a live session's elevation to
//!   a scope, one held statement), the decisions given so far, and [`status`] deciding where it
//!   stands (quorum, denial, expiry).
//! - [`check_approver`]: the requester never approves its own request; an approver outside the
//!   rule's groups, or not a human, is refused; a rationale is required.
//!
//! The service, [`Approvals`], which applies them: requests raised at connect time
//! ([`Approvals::session_access`]), by a statement that needs an approval-required scope
//! ([`Approvals::elevate`]) or a review ([`Approvals::hold`]), or through the API
//! ([`Approvals::create`]); decisions ([`Approvals::decide`], typed [`Action`]s), the one
//! place a grant from an approval is built; one wait for a decision that every waiting client
//! goes through; expiry ([`Approvals::sweep`]). It reaches storage only through
//! [`ApprovalStore`], live sessions through [`GrantRevocations`] and the audit trail through
//! `vigil_core::EventSink`, and records every step before it takes effect: when the audit trail
//! does not take a record, nothing happens (fail closed). Errors are [`ApprovalError`]s whose
//! [`ErrorKind`] a protocol maps to its own answers (the HTTP API: status codes). Callers come
//! authenticated ([`Caller`]): this crate knows no tokens.
//!
//! - [`webhook`]: notifications signed with HMAC-SHA-256 over the body and a timestamp, retried
//!   with backoff, each delivery recorded; a Slack-compatible payload.
//!
//! ## What it must not do
//! - Store anything but through [`ApprovalStore`]; keep a held statement's text with its
//!   literals anywhere but in this process's memory (never stored, recorded, logged or sent).
//! - Know a wire protocol or HTTP.

mod decide;
mod error;
mod literals;
mod notify;
mod ports;
mod records;
mod requests;
mod review;
mod rules;
mod service;
mod session;
mod sweep;
pub mod webhook;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod service_tests;

pub use decide::{Action, UnknownAction};
pub use error::{ApprovalError, ErrorKind, NotApproved};
pub use notify::WebhookSecretError;
pub use ports::{
    ApprovalStore, ApprovalUse, GrantRevocations, RequestFilter, StatementApproval, StoreFailure,
    Versioned,
};
pub use records::grant_issued;
pub use requests::{Caller, Literals, NewRequest, RequestView, Requester, StatementView};
pub use review::{needs_review_of, StatementAsk};
pub use rules::{
    check_approver, grant_window, status, AccessRequest, ApproverRefused, Decision, RequestStatus,
    Subject, UnknownStatus,
};
pub use service::{
    ApprovalParts, Approvals, ApprovalsConfig, BoxFuture, KnownIdentity, Outcome, Pending,
};
pub use session::ScopeAsk;

pub use vigil_policy::{ApprovalRule, PendingMode};
