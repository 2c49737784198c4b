//! Requests as callers of the API see them: asking ahead of time, listing, and showing one (a
//! held statement's literals only to a reviewer whose role may see them, recorded first).

use crate::error::ApprovalError;
use crate::ports::{RequestFilter, StatementApproval};
use crate::rules::{AccessRequest, Subject};
use crate::service::Approvals;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::StatementLiteralsShown;
use vigil_core::{Event, EventDraft, IdentityKind, Principal};

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The admin token: it may name the identity it asks for, or the human it decides for.
    Admin,
    /// A declared identity, proven by its own credential (a human's OIDC token, or a machine's
    /// service token or OIDC token).
    Identity(Arc<Principal>),
}

/// Whom a request is for, and whether they asked themselves.
#[derive(Clone, Debug)]
pub struct Requester {
    pub identity: String,
    /// The requester's principal, when it asked itself (the record says who asked).
    pub principal: Option<Arc<Principal>>,
}

impl Requester {
    /// The requester `caller` may ask for: the identity named (the admin token must name one),
    /// or the caller itself (an identity asks only for itself).
    pub fn of(caller: &Caller, identity: Option<String>) -> Result<Requester, ApprovalError> {
        match (caller, identity) {
            (Caller::Admin, Some(identity)) => Ok(Requester {
                identity,
                principal: None,
            }),
            (Caller::Admin, None) => Err(ApprovalError::AdminMustNameIdentity),
            (Caller::Identity(p), None) => Ok(Requester {
                identity: p.name.clone(),
                principal: Some(p.clone()),
            }),
            (Caller::Identity(p), Some(identity)) if identity == p.name => Ok(Requester {
                identity,
                principal: Some(p.clone()),
            }),
            (Caller::Identity(_), Some(_)) => Err(ApprovalError::OnlyForItself),
        }
    }
}

/// A request for a session's access, asked ahead of time.
#[derive(Clone, Debug, Default)]
pub struct NewRequest {
    pub connection: String,
    /// The approval-required policy whose scope is asked for (default: the first that binds
    /// the identity on the connection).
    pub policy: Option<String>,
    pub reason: Option<String>,
    /// How long the grant should last (capped by the rule's `max_duration`; default: that).
    pub duration: Option<Duration>,
    pub client_addr: Option<String>,
}

/// A request as shown to one caller.
#[derive(Clone, Debug)]
pub struct RequestView {
    pub request: AccessRequest,
    /// For a held statement: its text with literals (or why not) and its approval's use.
    pub statement: Option<StatementView>,
}

#[derive(Clone, Debug)]
pub struct StatementView {
    pub literals: Literals,
    pub approval: Option<StatementApproval>,
}

/// A held statement's text with its literals, as one caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literals {
    /// The caller may see it (recorded before it was shown).
    Shown(String),
    /// Kept, but not for this caller.
    Withheld,
    /// Not kept (the extended protocol, a restart, or its statement ran).
    NotKept,
}

impl Literals {
    pub fn as_str(&self) -> &'static str {
        match self {
            Literals::Shown(_) => "shown",
            Literals::Withheld => "withheld",
            Literals::NotKept => "not_kept",
        }
    }
}

impl Approvals {
    /// Raises a request for `ask.policy`'s scope (default: the first approval-required policy
    /// that binds them) for `requester`, recorded first.
    pub async fn create(
        &self,
        requester: Requester,
        ask: NewRequest,
    ) -> Result<AccessRequest, ApprovalError> {
        let (identity, connection) = (requester.identity.as_str(), ask.connection.as_str());
        let Some((policy, rule)) = self.policy_for(identity, connection, ask.policy.as_deref())
        else {
            return Err(match ask.policy {
                Some(policy) => ApprovalError::NotThatPolicy {
                    policy,
                    identity: identity.to_string(),
                    connection: connection.to_string(),
                },
                None => ApprovalError::NoPolicy {
                    identity: identity.to_string(),
                    connection: connection.to_string(),
                },
            });
        };
        let request = AccessRequest {
            duration: ask
                .duration
                .unwrap_or(rule.max_duration)
                .min(rule.max_duration),
            // Reasons come from clients: bounded, and never echoed into logs.
            reason: ask.reason.map(|r| r.chars().take(500).collect()),
            client_addr: ask.client_addr,
            ..Self::draft(
                identity,
                connection,
                Subject::Access {
                    policy: policy.name.clone(),
                },
                rule.pending_expiry,
            )
        };
        self.record_new(request, requester.principal).await
    }

    /// Requests matching `filter` (at most 100 unless a limit is given, never more than
    /// 10,000), newest first. Machines see only their own; humans and the admin see all.
    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: RequestFilter,
    ) -> Result<Vec<AccessRequest>, ApprovalError> {
        filter.limit = Some(filter.limit.unwrap_or(100).min(10_000));
        if let Caller::Identity(p) = caller {
            if p.kind != IdentityKind::Human {
                filter.identity = Some(p.name.clone());
            }
        }
        let found = self.blocking(move |s| s.access_requests(&filter)).await?;
        // A damaged row does not hide the others.
        Ok(found
            .into_iter()
            .filter_map(|r| r.ok())
            .map(|v| v.request)
            .collect())
    }

    /// One request. A machine sees only its own (others are not found).
    pub async fn show(&self, caller: &Caller, id: &str) -> Result<RequestView, ApprovalError> {
        let request = self
            .load(id)
            .await?
            .ok_or_else(|| ApprovalError::NoSuchRequest(id.to_string()))?
            .request;
        if let Caller::Identity(p) = caller {
            if p.kind != IdentityKind::Human && p.name != request.identity {
                return Err(ApprovalError::NoSuchRequest(id.to_string()));
            }
        }
        let statement = match &request.subject {
            Subject::Statement { policy, .. } => {
                Some(self.show_statement(caller, &request, policy).await?)
            }
            _ => None,
        };
        Ok(RequestView { request, statement })
    }

    /// What `show` adds for a held statement: its text with literals for a human whose groups
    /// the review reveals them to (proven by their own token; recorded as
    /// `StatementLiteralsShown` before it is shown), and the use of its approval.
    async fn show_statement(
        &self,
        caller: &Caller,
        request: &AccessRequest,
        policy: &str,
    ) -> Result<StatementView, ApprovalError> {
        let review = self
            .policy(policy)
            .and_then(|p| p.statement_review.as_ref());
        let viewer = match caller {
            Caller::Identity(p) if p.kind == IdentityKind::Human => Some(p),
            _ => None,
        };
        let may_see = match (viewer, review) {
            (Some(p), Some(review)) => self
                .identities
                .get(&p.name)
                .is_some_and(|i| review.reveals_literals_to(&i.groups)),
            _ => false,
        };
        let literals = match (self.literal_texts.get(&request.id), may_see, viewer) {
            (Some(text), true, Some(viewer)) => {
                let mut d =
                    EventDraft::new(Event::StatementLiteralsShown(StatementLiteralsShown {
                        request_id: request.id.clone(),
                        viewer: viewer.name.clone(),
                        viewer_auth: viewer.auth_method.as_str().to_string(),
                    }));
                d.identity = Some(viewer.clone());
                d.connection = Some(request.connection.as_str().into());
                // Who saw a statement's values is on record before they see it.
                self.sink
                    .append(d)
                    .await
                    .map_err(|source| ApprovalError::NotRecorded {
                        what: "that the literals were shown",
                        source,
                    })?;
                Literals::Shown(text)
            }
            (Some(_), _, _) => Literals::Withheld,
            (None, _, _) => Literals::NotKept,
        };
        let id = request.id.clone();
        let approval = self.blocking(move |s| s.statement_approval(&id)).await?;
        Ok(StatementView { literals, approval })
    }
}
