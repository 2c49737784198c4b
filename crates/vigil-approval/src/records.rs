//! The audit records of approvals, each built in one place.

use crate::rules::{AccessRequest, Subject};
use vigil_core::event::{AccessRequested, GrantIssued};
use vigil_core::IdentityKind;
use vigil_policy::Grant;

/// The record of a grant being issued, whatever issued it (a standing policy or an approval).
pub fn grant_issued(grant: &Grant) -> GrantIssued {
    GrantIssued {
        grant_id: grant.id.clone(),
        identity_name: grant.identity.clone(),
        connection_name: grant.connection.clone(),
        source: grant.source.as_str().to_string(),
        policy: grant.policy.clone(),
        // Canonical JSON always parses; the default is never reached.
        scope: serde_json::from_str(&grant.scope.canonical_json()).unwrap_or_default(),
        scope_digest: grant.scope_digest.clone(),
        not_before: grant.not_before,
        expires_at: grant.expires_at,
        request_id: grant.request_id.clone(),
    }
}

/// The record of a request being raised. `scope_digest` is the digest of the scope an approval
/// would grant (none for a held statement, which runs under the session's grant).
pub(crate) fn access_requested(
    request: &AccessRequest,
    identity_kind: Option<IdentityKind>,
    scope_digest: Option<String>,
) -> AccessRequested {
    let (subject, statement_text, requesting_session) = match &request.subject {
        Subject::Access { .. } => ("access", None, None),
        Subject::Scope {
            text, session_id, ..
        } => ("scope", Some(text.clone()), Some(session_id.clone())),
        Subject::Statement {
            text, session_id, ..
        } => ("statement", Some(text.clone()), session_id.clone()),
    };
    AccessRequested {
        request_id: request.id.clone(),
        identity_name: request.identity.clone(),
        connection_name: request.connection.clone(),
        policy: request.subject.policy().to_string(),
        subject: subject.into(),
        statement_text,
        requesting_session,
        duration_secs: request.duration.as_secs(),
        reason: request.reason.clone(),
        client_addr: request.client_addr.clone(),
        expires_at: request.expires_at,
        identity_kind,
        scope_digest,
    }
}
