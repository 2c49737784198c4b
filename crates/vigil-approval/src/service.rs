//! The approval service's core: what it holds, the policies and identities it decides by, the
//! store reached on the blocking pool, raising a request (recorded before anyone hears of it),
//! and the one wait for a decision that every waiting client goes through.
//!
//! The service's other faces add to [`Approvals`] in their own files: the API's asks
//! (`requests.rs`), decisions (`decide.rs`), the gateway's sessions and elevations
//! (`session.rs`), held statements (`review.rs`) and expiry (`sweep.rs`).

use crate::error::{ApprovalError, NotApproved};
use crate::literals::KeptTexts;
use crate::notify::{Notice, Notifier, WebhookSecretError};
use crate::ports::{
    ApprovalStore, ApprovalUse, GrantRevocations, RequestFilter, StoreFailure, Versioned,
};
use crate::records;
use crate::rules::{later, status, AccessRequest, RequestStatus, Subject};
use crate::webhook::WebhookConfig;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use vigil_core::{Event, EventDraft, EventSink, IdentityKind, Principal, Timestamp};
use vigil_policy::{ApprovalRule, Grant, PendingMode, PolicyConfig, StatementReviewRule};

/// A boxed future, as the service hands out for a client's wait.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `[approvals]` in the config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Where approvers reach the API (e.g. `https://vigil.example.org:9480`), for the links in
    /// notices and notifications. Default: the `[api] listen` address over http.
    pub public_url: Option<String>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// A declared identity as approvals need it: whether it is a human (only humans decide) and
/// its groups (which policies bind it, which approver groups it counts for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownIdentity {
    pub kind: IdentityKind,
    pub groups: Vec<String>,
}

/// What the service is built from.
pub struct ApprovalParts {
    pub store: Arc<dyn ApprovalStore>,
    pub sink: Arc<dyn EventSink>,
    pub revocations: Arc<dyn GrantRevocations>,
    /// Every configured policy (those without an approval rule or statement review are
    /// ignored).
    pub policies: Vec<PolicyConfig>,
    /// Declared identities, by name.
    pub identities: HashMap<String, KnownIdentity>,
    /// Where approvers reach the API, for links (`None`: messages name only the CLI).
    pub public_url: Option<String>,
    pub webhooks: Vec<WebhookConfig>,
}

/// Just-in-time approval (docs/APPROVALS.md): access requests raised at connect time, by a
/// statement that needs an elevation or review, or through the API; decided by humans; turned
/// into time-bound grants. Every step is recorded before it takes effect.
pub struct Approvals {
    pub(crate) store: Arc<dyn ApprovalStore>,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) revocations: Arc<dyn GrantRevocations>,
    /// Policies with an approval rule or a statement review.
    policies: Vec<PolicyConfig>,
    pub(crate) identities: HashMap<String, KnownIdentity>,
    pub(crate) notifier: Notifier,
    /// Bumped whenever a request changes here; waiting clients look again.
    changed: watch::Sender<u64>,
    /// One change at a time in this process (the store's versions guard against others).
    pub(crate) deciding: tokio::sync::Mutex<()>,
    /// One raise at a time, so that sessions asking at once share a request.
    raising: tokio::sync::Mutex<()>,
    /// Grants whose expiry was notified (in memory: after a restart, only grants that ended in
    /// the last few minutes are notified again).
    pub(crate) expiry_notified: Mutex<HashSet<String>>,
    pub(crate) literal_texts: KeptTexts,
}

impl Approvals {
    /// Reads the webhooks' secrets now: one that cannot be read stops startup.
    pub fn new(parts: ApprovalParts) -> Result<Self, WebhookSecretError> {
        Ok(Approvals {
            notifier: Notifier::new(parts.public_url, &parts.webhooks)?,
            store: parts.store,
            sink: parts.sink,
            revocations: parts.revocations,
            policies: parts
                .policies
                .into_iter()
                .filter(|p| p.approval.is_some() || p.statement_review.is_some())
                .collect(),
            identities: parts.identities,
            changed: watch::channel(0).0,
            deciding: tokio::sync::Mutex::new(()),
            raising: tokio::sync::Mutex::new(()),
            expiry_notified: Default::default(),
            literal_texts: KeptTexts::default(),
        })
    }

    /// Whether any policy needs approvals.
    pub fn any_rules(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Whether any policy needs approval of sessions.
    pub fn any_session_rules(&self) -> bool {
        self.policies.iter().any(|p| p.approval.is_some())
    }

    /// Whether any policy holds statements for review.
    pub fn any_statement_review(&self) -> bool {
        self.policies.iter().any(|p| p.statement_review.is_some())
    }

    pub(crate) fn policy(&self, name: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The approval-required policies (with their rules) that bind `identity` on `connection`,
    /// in the order of the configuration.
    pub(crate) fn approval_policies(
        &self,
        identity: &str,
        connection: &str,
    ) -> Vec<(&PolicyConfig, &ApprovalRule)> {
        let groups = self
            .identities
            .get(identity)
            .map(|i| i.groups.as_slice())
            .unwrap_or_default();
        self.policies
            .iter()
            .filter(|p| p.binds(identity, groups, connection))
            .filter_map(|p| p.approval.as_ref().map(|r| (p, r)))
            .collect()
    }

    /// The policy (with its rule) that would bind `identity` on `connection` once approved:
    /// `policy` if named (it must bind them), else the first.
    pub(crate) fn policy_for(
        &self,
        identity: &str,
        connection: &str,
        policy: Option<&str>,
    ) -> Option<(&PolicyConfig, &ApprovalRule)> {
        self.approval_policies(identity, connection)
            .into_iter()
            .find(|(p, _)| policy.is_none_or(|name| p.name == name))
    }

    /// The statement review of the policy `grant` was issued from.
    pub(crate) fn review_of(&self, grant: &Grant) -> Option<&StatementReviewRule> {
        self.policy(grant.policy.as_deref()?)
            .and_then(|p| p.statement_review.as_ref())
    }

    /// The rule `request` is decided by: its policy's approval rule, or for a held statement
    /// its policy's statement review's.
    pub(crate) fn rule(&self, request: &AccessRequest) -> Option<ApprovalRule> {
        let p = self.policy(request.subject.policy())?;
        match request.subject {
            Subject::Statement { .. } => p.statement_review.as_ref().map(|r| r.approval_rule()),
            _ => p.approval.clone(),
        }
    }

    /// Runs a store call on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ApprovalStore) -> Result<T, StoreFailure> + Send + 'static,
    ) -> Result<T, StoreFailure> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| {
                StoreFailure::Unavailable(format!("the store call did not complete: {e}"))
            })?
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Versioned>, StoreFailure> {
        let id = id.to_string();
        self.blocking(move |s| s.access_request(&id)).await
    }

    /// Waiting clients look again.
    pub(crate) fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// The live pending request of `identity` on `connection` that `wanted` accepts.
    pub(crate) async fn pending_where(
        &self,
        identity: &str,
        connection: &str,
        wanted: impl Fn(&AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>, ApprovalError> {
        let filter = RequestFilter {
            identity: Some(identity.to_string()),
            connection: Some(connection.to_string()),
            status: Some(RequestStatus::Pending),
            ..Default::default()
        };
        let now = Timestamp::now();
        let found = self.blocking(move |s| s.access_requests(&filter)).await?;
        for row in found {
            let request = row?.request;
            if request.expires_at > now && wanted(&request) {
                return Ok(Some(request));
            }
        }
        Ok(None)
    }

    /// A pending request: a new id, created now, expiring after `pending_expiry`; no duration,
    /// reason or client address (callers that have them set them).
    pub(crate) fn draft(
        identity: &str,
        connection: &str,
        subject: Subject,
        pending_expiry: Duration,
    ) -> AccessRequest {
        let now = Timestamp::now();
        AccessRequest {
            id: uuid::Uuid::now_v7().to_string(),
            identity: identity.to_string(),
            connection: connection.to_string(),
            subject,
            duration: Duration::ZERO,
            reason: None,
            client_addr: None,
            created_at: now,
            expires_at: later(now, pending_expiry),
            decisions: Vec::new(),
            status: RequestStatus::Pending,
            grant_id: None,
        }
    }

    /// The pending request `find` gives, or else `raise()` recorded as a new one. One raise at
    /// a time, so that sessions asking at once share a request.
    pub(crate) async fn pending_or_raise(
        &self,
        find: impl Future<Output = Result<Option<AccessRequest>, ApprovalError>>,
        raise: impl FnOnce() -> AccessRequest,
        principal: &Principal,
    ) -> Result<AccessRequest, ApprovalError> {
        let _one_at_a_time = self.raising.lock().await;
        match find.await? {
            Some(r) => Ok(r),
            None => {
                self.record_new(raise(), Some(Arc::new(principal.clone())))
                    .await
            }
        }
    }

    /// Records a new request (before anyone hears of it), stores it and tells who listens.
    /// `principal`: the requester, when it asked itself.
    pub(crate) async fn record_new(
        &self,
        request: AccessRequest,
        principal: Option<Arc<Principal>>,
    ) -> Result<AccessRequest, ApprovalError> {
        let identity_kind = principal
            .as_ref()
            .map(|p| p.kind)
            .or_else(|| self.identities.get(&request.identity).map(|i| i.kind));
        let scope_digest = match &request.subject {
            // A held statement runs under the session's grant: no scope is asked for.
            Subject::Statement { .. } => None,
            _ => self
                .policy(request.subject.policy())
                .map(|p| p.scope.digest()),
        };
        let mut draft = EventDraft::new(Event::AccessRequested(records::access_requested(
            &request,
            identity_kind,
            scope_digest,
        )));
        draft.identity = principal;
        draft.connection = Some(request.connection.as_str().into());
        self.sink
            .append(draft)
            .await
            .map_err(|source| ApprovalError::NotRecorded {
                what: "the access request",
                source,
            })?;
        let kept = request.clone();
        self.blocking(move |s| s.insert_access_request(&kept))
            .await?;
        tracing::info!(request = %request.id, identity = %request.identity, connection = %request.connection, "access request raised");
        self.notifier
            .notify(Notice::RequestCreated, &request, &self.sink);
        self.changed();
        Ok(request)
    }

    /// Uses an approval of a held statement: durably marked used before the statement runs.
    /// `None`: there is none to use.
    pub(crate) async fn use_statement_approval(
        &self,
        ask: ApprovalUse,
    ) -> Result<Option<String>, StoreFailure> {
        let used = self
            .blocking(move |s| s.use_statement_approval(&ask))
            .await?;
        if let Some(id) = &used {
            self.literal_texts.forget(id);
            tracing::info!(request = %id, "held statement approved: its approval is used");
        }
        Ok(used)
    }

    /// Waits until request `id` is approved (the request), or denied, expired or `timeout`
    /// passes. Every waiting client (a session, an elevation, a held statement) waits here.
    pub(crate) async fn wait_decided(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<AccessRequest, NotApproved> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            let request = match self.load(id).await {
                Ok(Some(v)) => v.request,
                Ok(None) => return Err(NotApproved::Gone(id.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read access request");
                    return Err(NotApproved::Unreadable(id.to_string()));
                }
            };
            let current = self
                .rule(&request)
                .map(|r| status(&r, &request, Timestamp::now()))
                .unwrap_or(request.status);
            match current {
                RequestStatus::Approved => return Ok(request),
                RequestStatus::Pending => {}
                other => {
                    return Err(NotApproved::Ended {
                        id: id.to_string(),
                        status: other.as_str(),
                    })
                }
            }
            // Decisions made in this process wake us at once; others (another gateway) within
            // the poll interval.
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(NotApproved::TimedOut {
                        id: id.to_string(),
                        retry: match request.subject {
                            Subject::Access { .. } => "connect again",
                            _ => "send the statement again",
                        },
                    });
                }
            }
        }
    }

    /// What the client hears of the pending request `request_id` under `mode`: refused now
    /// with `fail` (message and hint), or told `notice` while it waits for the decision, after
    /// which `then` turns the approved request into what the client goes on with.
    pub(crate) fn pending<T, F, Fut>(
        self: &Arc<Self>,
        request_id: String,
        mode: PendingMode,
        wait_timeout: Duration,
        fail: (String, String),
        notice: String,
        then: F,
    ) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>, AccessRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, NotApproved>> + Send + 'static,
    {
        match mode {
            PendingMode::Fail => Pending::Fail {
                request_id,
                message: fail.0,
                hint: fail.1,
            },
            PendingMode::Wait => {
                let approvals = self.clone();
                let waited = request_id.clone();
                Pending::Wait {
                    request_id,
                    notice,
                    decided: Box::pin(async move {
                        let approved = approvals.wait_decided(&waited, wait_timeout).await?;
                        then(approvals, approved).await
                    }),
                }
            }
        }
    }
}

/// A pending request, as the client that raised (or reused) it hears of it.
pub enum Pending<T> {
    /// Refused now, naming the request; the client asks again once it is approved.
    Fail {
        request_id: String,
        message: String,
        hint: String,
    },
    /// The client is told `notice` and waits: `decided` resolves with what the approval gives,
    /// or why there is none (denial, expiry, the wait timing out).
    Wait {
        request_id: String,
        notice: String,
        decided: BoxFuture<'static, Result<T, NotApproved>>,
    },
}

/// Where a statement that needs an approval stands.
pub enum Outcome<T> {
    /// Approved already: `T` is the grant (elevation) or the used approval's request id
    /// (review).
    Ready(T),
    Pending(Pending<T>),
}

/// `d` as a person reads it (`30m`).
pub(crate) fn human(d: Duration) -> humantime_serde::re::humantime::FormattedDuration {
    humantime_serde::re::humantime::format_duration(d)
}
