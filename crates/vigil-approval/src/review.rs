//! Per-statement review: which statements a grant's policy holds (from the config, in memory,
//! cheap enough for the data path), and for a held statement the approval used (durably, before
//! it runs) or the request raised.

use crate::error::{ApprovalError, NotApproved};
use crate::ports::ApprovalUse;
use crate::rules::{later, AccessRequest, Subject};
use crate::service::{human, Approvals, Outcome};
use std::sync::Arc;
use vigil_access::{Access, CommandClass};
use vigil_core::{Principal, Timestamp};
use vigil_policy::Grant;

/// A statement a grant allows, held for review.
pub struct StatementAsk<'a> {
    pub principal: &'a Principal,
    pub connection: &'a str,
    pub session_id: &'a str,
    /// The grant that allows it.
    pub grant: &'a Grant,
    pub access: &'a Access,
    /// The bytes an approval is for (their SHA-256).
    pub exact_text: &'a [u8],
    /// The text with its literals, for reviewers whose role may see them (kept in memory
    /// only), if the client sent it whole.
    pub literal_text: Option<String>,
}

/// Whether `access` holds a statement of a kind `kinds` lists (`ddl`, `delete_without_where`,
/// `update_without_where`).
pub fn needs_review_of(kinds: &[String], access: &Access) -> bool {
    let has_where = access.shape.text.to_ascii_uppercase().contains("WHERE");
    access.statements.iter().any(|s| {
        kinds.iter().any(|k| match k.as_str() {
            "ddl" => s.class == CommandClass::Ddl,
            "delete_without_where" => s.command == "DELETE" && !has_where,
            "update_without_where" => s.command == "UPDATE" && !has_where,
            _ => false,
        })
    })
}

/// Hex SHA-256 of a held statement's bytes: what an approval is for.
fn statement_digest(text: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

impl Approvals {
    /// Whether the policy `grant` came from holds `access` for review. Asked for every
    /// statement a grant allows: no I/O.
    pub fn needs_review(&self, grant: &Grant, access: &Access) -> bool {
        self.review_of(grant)
            .is_some_and(|review| needs_review_of(&review.statements, access))
    }

    /// A held statement: the approval of this exact statement used now (durably, before it
    /// runs; [`Outcome::Ready`] with the request id), or its request raised (or reused).
    pub async fn hold(
        self: &Arc<Self>,
        ask: StatementAsk<'_>,
    ) -> Result<Outcome<String>, ApprovalError> {
        let review = self
            .review_of(ask.grant)
            .ok_or(ApprovalError::NoLongerReviewed)?
            .clone();
        let policy = ask.grant.policy.clone().unwrap_or_default();
        let identity = ask.principal.name.as_str();
        let digest = statement_digest(ask.exact_text);
        let approval_use = |request_id: Option<String>| ApprovalUse {
            identity: identity.to_string(),
            connection: ask.connection.to_string(),
            statement_digest: digest.clone(),
            request_id,
            at: Timestamp::now(),
            session: ask.session_id.to_string(),
        };
        // Approved and not used yet: used now, durably, before the statement runs.
        if let Some(id) = self.use_statement_approval(approval_use(None)).await? {
            return Ok(Outcome::Ready(id));
        }
        let request = self
            .pending_or_raise(
                self.pending_statement(identity, ask.connection, &digest),
                || {
                    Self::draft(
                        identity,
                        ask.connection,
                        Subject::Statement {
                            policy: policy.clone(),
                            fingerprint: ask.access.shape.fingerprint.clone(),
                            // Literal-free: what reviewers see.
                            text: ask.access.shape.text.clone(),
                            statement_digest: digest.clone(),
                            session_id: Some(ask.session_id.to_string()),
                        },
                        review.pending_expiry,
                    )
                },
                ask.principal,
            )
            .await?;
        if !review.reveal_literals_groups.is_empty() {
            if let Some(text) = ask.literal_text {
                // Until the request expires, and as long again for the approval's use.
                let until = later(request.expires_at, review.pending_expiry);
                self.literal_texts.keep(&request.id, text, until);
            }
        }
        let id = request.id.clone();
        let how = self.notifier.how_to_approve(&id);
        let message = format!(
            "this statement needs a reviewer's approval: access request {id} is pending; send it again, unchanged, once approved (it then runs once)"
        );
        let hint = format!("nothing was run; {how}");
        let notice = format!(
            "this statement is held for a reviewer's approval: access request {id} is pending; it runs once approved, waiting up to {} ({how})",
            human(review.wait_timeout)
        );
        // Once approved, the approval of this very request is used by this session.
        let mut waited_use = approval_use(Some(id.clone()));
        Ok(Outcome::Pending(self.pending(
            id,
            review.mode,
            review.wait_timeout,
            (message, hint),
            notice,
            move |approvals, approved| async move {
                waited_use.at = Timestamp::now();
                match approvals.use_statement_approval(waited_use).await {
                    Ok(Some(id)) => Ok(id),
                    Ok(None) => Err(NotApproved::UsedElsewhere(approved.id)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use a statement approval");
                        Err(NotApproved::UseNotRecorded(approved.id))
                    }
                }
            },
        )))
    }

    /// The pending request of a held statement (same identity, connection and exact bytes).
    async fn pending_statement(
        &self,
        identity: &str,
        connection: &str,
        digest: &str,
    ) -> Result<Option<AccessRequest>, ApprovalError> {
        self.pending_where(identity, connection, |r| {
            matches!(&r.subject, Subject::Statement { statement_digest, .. } if statement_digest == digest)
        })
        .await
    }
}
