//! Just-in-time approval (docs/APPROVALS.md): access requests raised at connect time or through
//! the API, decided by humans, turned into time-bound grants through the same grant machinery
//! as standing policies (so revocation and expiry end live sessions). Every step is recorded
//! before it takes effect.

use anyhow::{anyhow, Context, Result};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vigil_api::access_requests::{
    AccessRequestService, BoxFuture as ApiFuture, Caller, CreateBody, DecideBody, ListQuery,
    ServiceError,
};
use vigil_approval::webhook::{self, Notification, WebhookConfig};
use vigil_approval::{
    check_approver, grant_window, status, AccessRequest, ApprovalRule, Decision, PendingMode,
    RequestStatus, Subject,
};
use vigil_core::event::{
    AccessDecided, AccessRequestExpired, AccessRequested, GrantIssued, GrantRevoked,
    WebhookDelivery,
};
use vigil_core::{
    AuthMethod, Event, EventDraft, EventSink, IdentityKind, Principal, SecretString, Timestamp,
};
use vigil_identity::{Authenticator, IdentityConfig};
use vigil_pg::{
    AccessAsk, ApprovalGate, BoxFuture, Elevation, ElevationAsk, Pending, PendingAccess,
    Revocations,
};
use vigil_policy::{Grant, GrantSource, PolicyConfig};
use vigil_store::{AccessRequestFilter, AccessRequestRecord, StatementApprovalRecord, Store};

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

/// Who decides: a human identity, proven by its own OIDC token or vouched for by the admin
/// token.
struct Approver {
    name: String,
    kind: IdentityKind,
    groups: Vec<String>,
    auth: AuthMethod,
}

pub struct Approvals {
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    revocations: Arc<Revocations>,
    authenticator: Arc<Authenticator>,
    /// Policies with an approval rule.
    policies: Vec<PolicyConfig>,
    identities: HashMap<String, IdentityConfig>,
    public_url: Option<String>,
    webhooks: Vec<(WebhookConfig, Arc<SecretString>)>,
    http: reqwest::Client,
    /// Bumped whenever a request changes here; waiting connections look again.
    changed: watch::Sender<u64>,
    /// One change at a time in this process (the store's versions guard against others).
    deciding: tokio::sync::Mutex<()>,
    /// Grants whose expiry was notified (in memory: after a restart, only grants that ended in
    /// the last few minutes are notified again).
    expiry_notified: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Held statements' texts with their literals, by request id, for reviewers whose role may
    /// see them (`reveal_literals_groups`). In this process's memory only: never stored,
    /// recorded, logged or sent to webhooks; dropped once the statement ran or its request
    /// ended; a restart forgets them.
    literal_texts: std::sync::Mutex<HashMap<String, KeptText>>,
    /// One raise at a time, so that a statement sent twice at once raises one request.
    raising: tokio::sync::Mutex<()>,
}

/// A held statement's text with its literals, kept in memory until `until`.
struct KeptText {
    text: String,
    until: Timestamp,
}

/// At most this many texts with literals are kept (the oldest go first), each cut at
/// [`MAX_KEPT_TEXT`] bytes.
const MAX_KEPT_TEXTS: usize = 1000;
const MAX_KEPT_TEXT: usize = 64 * 1024;

fn secs(d: Duration) -> i64 {
    d.as_micros() as i64
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(t.as_micros() + secs(d))
}

fn to_record(r: &AccessRequest, version: u64) -> AccessRequestRecord {
    AccessRequestRecord {
        id: r.id.clone(),
        identity: r.identity.clone(),
        connection: r.connection.clone(),
        status: r.status.as_str().to_string(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        grant_id: r.grant_id.clone(),
        version,
        body: serde_json::to_string(r).expect("requests serialize"),
    }
}

fn from_record(r: &AccessRequestRecord) -> Result<AccessRequest> {
    serde_json::from_str(&r.body).with_context(|| format!("access request {}: unreadable", r.id))
}

fn policy_of(r: &AccessRequest) -> &str {
    match &r.subject {
        Subject::Access { policy }
        | Subject::Scope { policy, .. }
        | Subject::Statement { policy, .. } => policy,
    }
}

/// Hex SHA-256 of a held statement's bytes: what an approval is for.
fn statement_digest(text: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

impl Approvals {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        sink: Arc<dyn EventSink>,
        revocations: Arc<Revocations>,
        authenticator: Arc<Authenticator>,
        policies: &[PolicyConfig],
        identities: &[IdentityConfig],
        config: &ApprovalsConfig,
        api_listen: Option<std::net::SocketAddr>,
    ) -> Result<Self> {
        let mut webhooks = Vec::new();
        for hook in &config.webhooks {
            let secret = hook
                .secret
                .resolve()
                .with_context(|| format!("approvals.webhooks {:?}: secret", hook.name))?;
            webhooks.push((hook.clone(), Arc::new(secret)));
        }
        Ok(Approvals {
            store,
            sink,
            revocations,
            authenticator,
            policies: policies
                .iter()
                .filter(|p| p.approval.is_some() || p.statement_review.is_some())
                .cloned()
                .collect(),
            identities: identities
                .iter()
                .map(|i| (i.name.clone(), i.clone()))
                .collect(),
            public_url: config
                .public_url
                .clone()
                .or_else(|| api_listen.map(|a| format!("http://{a}"))),
            webhooks,
            http: reqwest::Client::new(),
            changed: watch::channel(0).0,
            deciding: tokio::sync::Mutex::new(()),
            expiry_notified: Default::default(),
            literal_texts: Default::default(),
            raising: tokio::sync::Mutex::new(()),
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

    /// The approval-required policies (with their rules) that bind `identity` on `connection`,
    /// in the order of the configuration.
    fn approval_policies(
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
    fn policy_for(
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
    fn review_of(&self, grant: &Grant) -> Option<&vigil_policy::StatementReviewRule> {
        let name = grant.policy.as_deref()?;
        self.policies
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.statement_review.as_ref())
    }

    /// How an approver approves request `id`.
    fn how_to_approve(&self, id: &str) -> String {
        match self.url_of(id) {
            Some(url) => format!(
                "an approver runs `vigil request approve {id} --reason TEXT` or POSTs to {url}/approve"
            ),
            None => format!("an approver runs `vigil request approve {id} --reason TEXT`"),
        }
    }

    /// The rule `request` is decided by: its policy's approval rule, or for a held statement
    /// its policy's statement review's.
    fn rule(&self, request: &AccessRequest) -> Option<ApprovalRule> {
        let p = self
            .policies
            .iter()
            .find(|p| p.name == policy_of(request))?;
        match request.subject {
            Subject::Statement { .. } => p.statement_review.as_ref().map(|r| r.approval_rule()),
            _ => p.approval.clone(),
        }
    }

    /// Whether any policy holds statements for review.
    pub fn any_statement_review(&self) -> bool {
        self.policies.iter().any(|p| p.statement_review.is_some())
    }

    fn url_of(&self, id: &str) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}/api/v1/access-requests/{id}", u.trim_end_matches('/')))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, vigil_store::StoreError> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&*store)).await??)
    }

    async fn load(&self, id: &str) -> Result<Option<(AccessRequest, u64)>> {
        let id = id.to_string();
        let record = self.blocking(move |s| s.access_request(&id)).await?;
        record
            .map(|r| Ok((from_record(&r)?, r.version)))
            .transpose()
    }

    /// The pending requests of `identity` on `connection` that `wanted` accepts.
    async fn pending_where(
        &self,
        identity: &str,
        connection: &str,
        wanted: impl Fn(&AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>> {
        let filter = AccessRequestFilter {
            identity: Some(identity.to_string()),
            connection: Some(connection.to_string()),
            status: Some("pending".into()),
            ..Default::default()
        };
        let now = Timestamp::now();
        let found = self
            .blocking(move |s| s.list_access_requests(&filter))
            .await?;
        for r in found {
            let request = from_record(&r)?;
            if request.expires_at > now && wanted(&request) {
                return Ok(Some(request));
            }
        }
        Ok(None)
    }

    /// A pending request for `policy`'s scope of `identity` on `connection` (connecting
    /// again, or another statement that needs the same scope, reuses it).
    async fn pending(
        &self,
        identity: &str,
        connection: &str,
        policy: &str,
    ) -> Result<Option<AccessRequest>> {
        self.pending_where(identity, connection, |r| {
            matches!(&r.subject, Subject::Access { policy: p } | Subject::Scope { policy: p, .. } if p == policy)
        })
        .await
    }

    /// The pending request of a held statement (same identity, connection and exact text).
    async fn pending_statement(
        &self,
        identity: &str,
        connection: &str,
        digest: &str,
    ) -> Result<Option<AccessRequest>> {
        self.pending_where(identity, connection, |r| {
            matches!(&r.subject, Subject::Statement { statement_digest, .. } if statement_digest == digest)
        })
        .await
    }

    /// A live grant approved under `policy` for `identity` on `connection`, with its request.
    async fn live_approved_grant(
        &self,
        identity: &str,
        connection: &str,
        policy: &str,
    ) -> Result<Option<Grant>> {
        let now = Timestamp::now();
        let filter = vigil_store::GrantFilter {
            identity: Some(identity.to_string()),
            connection: Some(connection.to_string()),
            live_at: Some(now),
        };
        let found = self.blocking(move |s| s.list_grants(&filter)).await?;
        for r in found.iter().rev() {
            if r.source != "approval"
                || r.policy.as_deref() != Some(policy)
                || self.revocations.is_revoked(&r.id)
            {
                continue;
            }
            let mut grant = crate::grants::from_record(r)?;
            if grant.live(now).is_err() {
                continue;
            }
            grant.request_id = self.request_of_grant(&grant.id).await?;
            return Ok(Some(grant));
        }
        Ok(None)
    }

    /// The request whose approval issued grant `grant_id`.
    async fn request_of_grant(&self, grant_id: &str) -> Result<Option<String>> {
        let filter = AccessRequestFilter {
            grant_id: Some(grant_id.to_string()),
            limit: Some(1),
            ..Default::default()
        };
        let found = self
            .blocking(move |s| s.list_access_requests(&filter))
            .await?;
        Ok(found.into_iter().next().map(|r| r.id))
    }

    /// Uses an approval of a held statement (that of `request_id`, if given): durably marked
    /// used by `session` before the statement runs. `None`: there is none to use.
    async fn use_statement_approval(
        &self,
        identity: &str,
        connection: &str,
        digest: &str,
        request_id: Option<&str>,
        session: &str,
    ) -> Result<Option<String>> {
        let (identity, connection, digest) = (
            identity.to_string(),
            connection.to_string(),
            digest.to_string(),
        );
        let (request_id, session) = (request_id.map(str::to_string), session.to_string());
        let used = self
            .blocking(move |s| {
                s.use_statement_approval(
                    &identity,
                    &connection,
                    &digest,
                    request_id.as_deref(),
                    Timestamp::now(),
                    &session,
                )
            })
            .await?;
        if let Some(id) = &used {
            self.forget_text(id);
            tracing::info!(request = %id, "held statement approved: its approval is used");
        }
        Ok(used)
    }

    /// Keeps a held statement's text with its literals in memory, for reviewers who may see it.
    fn keep_text(&self, request_id: &str, text: String, until: Timestamp) {
        let mut kept = self.literal_texts.lock().unwrap();
        if kept.contains_key(request_id) {
            return;
        }
        let now = Timestamp::now();
        kept.retain(|_, k| k.until > now);
        if kept.len() >= MAX_KEPT_TEXTS {
            if let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, k)| k.until)
                .map(|(id, _)| id.clone())
            {
                kept.remove(&oldest);
            }
        }
        let mut text = text;
        if text.len() > MAX_KEPT_TEXT {
            let mut cut = MAX_KEPT_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" …[cut]");
        }
        kept.insert(request_id.to_string(), KeptText { text, until });
    }

    fn forget_text(&self, request_id: &str) {
        self.literal_texts.lock().unwrap().remove(request_id);
    }

    fn kept_text(&self, request_id: &str) -> Option<String> {
        let now = Timestamp::now();
        self.literal_texts
            .lock()
            .unwrap()
            .get(request_id)
            .filter(|k| k.until > now)
            .map(|k| k.text.clone())
    }

    /// A pending request: a new id, created now, expiring after `pending_expiry`; no duration,
    /// reason or client address (callers that have them set them).
    fn draft(
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
    async fn pending_or_raise(
        &self,
        find: impl std::future::Future<Output = Result<Option<AccessRequest>>>,
        raise: impl FnOnce() -> AccessRequest,
        principal: &Principal,
    ) -> Result<AccessRequest> {
        let _one_at_a_time = self.raising.lock().await;
        match find.await? {
            Some(r) => Ok(r),
            // Recorded before the client hears of it.
            None => {
                self.record_new(raise(), Some(Arc::new(principal.clone())))
                    .await
            }
        }
    }

    /// Raises a request for `policy`'s scope (default: the first approval-required policy that
    /// binds them), recorded first. `principal` is the requester when it asked itself.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        identity: &str,
        connection: &str,
        policy: Option<&str>,
        reason: Option<String>,
        client_addr: Option<String>,
        duration: Option<Duration>,
        principal: Option<Arc<Principal>>,
    ) -> Result<AccessRequest> {
        let (policy, rule) = self.policy_for(identity, connection, policy).ok_or_else(|| {
            anyhow!("no policy lets identity {identity:?} ask for approval on connection {connection:?}")
        })?;
        let request = AccessRequest {
            duration: duration.unwrap_or(rule.max_duration).min(rule.max_duration),
            // Reasons come from clients: bounded, and never echoed into logs.
            reason: reason.map(|r| r.chars().take(500).collect()),
            client_addr,
            ..Self::draft(
                identity,
                connection,
                Subject::Access {
                    policy: policy.name.clone(),
                },
                rule.pending_expiry,
            )
        };
        self.record_new(request, principal).await
    }

    /// Records a new request, stores it and tells who listens.
    async fn record_new(
        &self,
        request: AccessRequest,
        principal: Option<Arc<Principal>>,
    ) -> Result<AccessRequest> {
        let (subject, statement_text, requesting_session) = match &request.subject {
            Subject::Access { .. } => ("access", None, None),
            Subject::Scope {
                text, session_id, ..
            } => ("scope", Some(text.clone()), Some(session_id.clone())),
            Subject::Statement {
                text, session_id, ..
            } => ("statement", Some(text.clone()), session_id.clone()),
        };
        let connection = request.connection.clone();
        let identity = request.identity.clone();
        let mut draft = EventDraft::new(Event::AccessRequested(AccessRequested {
            request_id: request.id.clone(),
            identity_name: request.identity.clone(),
            connection_name: request.connection.clone(),
            policy: policy_of(&request).to_string(),
            subject: subject.into(),
            statement_text,
            requesting_session,
            duration_secs: request.duration.as_secs(),
            reason: request.reason.clone(),
            client_addr: request.client_addr.clone(),
            expires_at: request.expires_at,
            identity_kind: principal
                .as_ref()
                .map(|p| p.kind)
                .or_else(|| self.identities.get(&request.identity).map(|i| i.kind)),
            scope_digest: match &request.subject {
                Subject::Statement { .. } => None,
                _ => self
                    .policies
                    .iter()
                    .find(|p| p.name == policy_of(&request))
                    .map(|p| p.scope.digest()),
            },
        }));
        draft.identity = principal;
        draft.connection = Some(connection.as_str().into());
        self.sink
            .append(draft)
            .await
            .context("cannot record the access request")?;
        let record = to_record(&request, 1);
        self.blocking(move |s| s.insert_access_request(&record))
            .await?;
        tracing::info!(request = %request.id, %identity, %connection, "access request raised");
        self.notify("request_created", &request);
        self.changed.send_modify(|n| *n += 1);
        Ok(request)
    }

    /// Waits until request `id` is approved (`Ok`), or denied, expired or `timeout` passes
    /// (`Err` naming the request; `retry` says what the client does then).
    pub async fn wait_decided(
        self: Arc<Self>,
        id: String,
        timeout: Duration,
        retry: &'static str,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            let (request, _) = match self.load(&id).await {
                Ok(Some(r)) => r,
                Ok(None) => return Err(format!("access request {id} no longer exists")),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read access request");
                    return Err(format!("Vigil could not read access request {id}"));
                }
            };
            let now = Timestamp::now();
            let current = self
                .rule(&request)
                .map(|r| status(&r, &request, now))
                .unwrap_or(request.status);
            match current {
                RequestStatus::Approved => return Ok(()),
                RequestStatus::Pending => {}
                other => {
                    return Err(format!(
                        "access request {id} was {}; no grant was issued",
                        other.as_str()
                    ))
                }
            }
            // Decisions made in this process wake us at once; others (another gateway) within
            // the poll interval.
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "access request {id} was not approved within the wait timeout; it stays pending: {retry} once it is approved"
                    ));
                }
            }
        }
    }

    /// The grant approved request `id` issued, as a session holds it.
    async fn granted(&self, id: &str) -> Result<Arc<Grant>, String> {
        let unreadable = |e: anyhow::Error| {
            tracing::warn!(error = %format!("{e:#}"), "cannot read an approved grant");
            format!("Vigil could not read the grant of access request {id}")
        };
        let (request, _) = self
            .load(id)
            .await
            .map_err(unreadable)?
            .ok_or_else(|| format!("access request {id} no longer exists"))?;
        let grant_id = request
            .grant_id
            .ok_or_else(|| format!("access request {id} issued no grant"))?;
        let gid = grant_id.clone();
        let record = self
            .blocking(move |s| s.grant(&gid))
            .await
            .map_err(unreadable)?
            .ok_or_else(|| format!("the grant {grant_id} of access request {id} is gone"))?;
        let mut grant = crate::grants::from_record(&record).map_err(unreadable)?;
        grant.request_id = Some(id.to_string());
        Ok(Arc::new(grant))
    }

    fn approver(&self, caller: &Caller, acting_as: Option<&str>) -> Result<Approver, ServiceError> {
        let (name, auth) = match (caller, acting_as) {
            (Caller::Admin, Some(name)) => (name.to_string(), AuthMethod::AdminToken),
            (Caller::Admin, None) => {
                return Err(ServiceError::new(
                    StatusCode::BAD_REQUEST,
                    "with the admin token, name the human approver you act for (\"as\", or --as on the CLI)",
                ))
            }
            (Caller::Identity(p), None) => (p.name.clone(), p.auth_method),
            (Caller::Identity(_), Some(_)) => {
                return Err(ServiceError::new(
                    StatusCode::FORBIDDEN,
                    "only the admin token may act for someone else",
                ))
            }
        };
        let identity = self.identities.get(&name).ok_or_else(|| {
            ServiceError::new(
                StatusCode::FORBIDDEN,
                format!("{name:?} is not a declared identity"),
            )
        })?;
        Ok(Approver {
            name,
            kind: identity.kind,
            groups: identity.groups.clone(),
            auth,
        })
    }

    /// Approve, deny or revoke, as `approver`.
    async fn decide_as(
        &self,
        approver: Approver,
        id: &str,
        action: &str,
        rationale: &str,
    ) -> Result<AccessRequest, ServiceError> {
        let internal = |e: anyhow::Error| {
            tracing::error!(error = %format!("{e:#}"), "access request decision failed");
            ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
        };
        let _one_at_a_time = self.deciding.lock().await;
        let (mut request, version) = self.load(id).await.map_err(internal)?.ok_or_else(|| {
            ServiceError::new(StatusCode::NOT_FOUND, format!("no access request {id}"))
        })?;
        let rule = self.rule(&request).ok_or_else(|| {
            ServiceError::new(
                StatusCode::CONFLICT,
                "the policy of this request no longer needs approval (or no longer exists)",
            )
        })?;
        let now = Timestamp::now();
        let refused = |e: vigil_approval::ApproverRefused| {
            ServiceError::new(StatusCode::FORBIDDEN, e.to_string())
        };
        let mut grant = None;
        let mut statement_approval = None;
        if action == "revoke" {
            // Revoking needs the same standing as approving, on an approved request.
            let mut as_pending = request.clone();
            as_pending.status = RequestStatus::Pending;
            as_pending.decisions.clear();
            as_pending.expires_at = later(now, Duration::from_secs(1));
            let mut no_hours = rule.clone();
            no_hours.allowed_hours = None;
            if request.status != RequestStatus::Approved {
                return Err(ServiceError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "the request is {}, not approved: nothing to revoke",
                        request.status.as_str()
                    ),
                ));
            }
            check_approver(
                &no_hours,
                &as_pending,
                &approver.name,
                approver.kind,
                &approver.groups,
                rationale,
                now,
            )
            .map_err(refused)?;
            request.status = RequestStatus::Revoked;
        } else {
            check_approver(
                &rule,
                &request,
                &approver.name,
                approver.kind,
                &approver.groups,
                rationale,
                now,
            )
            .map_err(refused)?;
            request.decisions.push(Decision {
                approver: approver.name.clone(),
                approver_kind: approver.kind,
                approver_groups: approver.groups.clone(),
                approve: action == "approve",
                rationale: rationale.to_string(),
                at: now,
            });
            request.status = status(&rule, &request, now);
            if let Subject::Statement {
                statement_digest, ..
            } = &request.subject
            {
                // A held statement: approval lets that exact statement run once; no grant.
                match request.status {
                    RequestStatus::Approved => {
                        statement_approval = Some(StatementApprovalRecord {
                            request_id: request.id.clone(),
                            identity: request.identity.clone(),
                            connection: request.connection.clone(),
                            statement_digest: statement_digest.clone(),
                            approved_at: now,
                            expires_at: later(now, rule.pending_expiry),
                            used_at: None,
                            used_session: None,
                        });
                    }
                    RequestStatus::Pending => {}
                    _ => self.forget_text(&request.id),
                }
            } else if request.status == RequestStatus::Approved {
                let policy = self
                    .policies
                    .iter()
                    .find(|p| p.name == policy_of(&request))
                    .expect("the rule came from this policy");
                let (not_before, expires_at) = grant_window(&rule, &request, now);
                let g = Grant {
                    id: uuid::Uuid::now_v7().to_string(),
                    identity: request.identity.clone(),
                    connection: request.connection.clone(),
                    source: GrantSource::Approval,
                    policy: Some(policy.name.clone()),
                    scope_digest: policy.scope.digest(),
                    scope: policy.scope.clone(),
                    not_before,
                    expires_at: Some(expires_at),
                    created_at: now,
                    revoked_at: None,
                    revoked_by: None,
                    revoke_reason: None,
                    request_id: Some(request.id.clone()),
                };
                request.grant_id = Some(g.id.clone());
                grant = Some(g);
            }
        }
        let principal = Arc::new(Principal {
            name: approver.name.clone(),
            kind: approver.kind,
            auth_method: approver.auth,
            issuer: None,
            subject: None,
            credential_id: None,
        });
        let mut drafts = vec![Event::AccessDecided(AccessDecided {
            request_id: request.id.clone(),
            action: action.to_string(),
            approver: approver.name.clone(),
            approver_kind: approver.kind,
            approver_auth: approver.auth.as_str().to_string(),
            rationale: rationale.to_string(),
            status: request.status.as_str().to_string(),
            grant_id: grant.as_ref().map(|g| g.id.clone()),
            identity_name: Some(request.identity.clone()),
            connection_name: Some(request.connection.clone()),
        })];
        if let Some(g) = &grant {
            drafts.push(Event::GrantIssued(GrantIssued {
                grant_id: g.id.clone(),
                identity_name: g.identity.clone(),
                connection_name: g.connection.clone(),
                source: "approval".into(),
                policy: g.policy.clone(),
                scope: serde_json::from_str(&g.scope.canonical_json()).unwrap_or_default(),
                scope_digest: g.scope_digest.clone(),
                not_before: g.not_before,
                expires_at: g.expires_at,
                request_id: Some(request.id.clone()),
            }));
        }
        if action == "revoke" {
            if let Some(grant_id) = &request.grant_id {
                drafts.push(Event::GrantRevoked(GrantRevoked {
                    grant_id: grant_id.clone(),
                    revoked_by: approver.name.clone(),
                    reason: Some(rationale.to_string()),
                }));
            }
        }
        let drafts = drafts
            .into_iter()
            .map(|e| {
                let mut d = EventDraft::new(e);
                d.identity = Some(principal.clone());
                d.connection = Some(request.connection.as_str().into());
                d
            })
            .collect();
        // Recorded before it takes effect.
        self.sink
            .append_all(drafts)
            .await
            .map_err(|e| internal(anyhow!("cannot record the decision: {e}")))?;
        if let Some(g) = &grant {
            let record = crate::grants::to_record(g);
            self.blocking(move |s| s.insert_grant(&record))
                .await
                .map_err(internal)?;
        }
        // Kept before the request reads approved, so a waiting statement finds it.
        if let Some(a) = statement_approval {
            self.blocking(move |s| s.insert_statement_approval(&a))
                .await
                .map_err(internal)?;
        }
        if action == "revoke" {
            if let Subject::Statement {
                statement_digest, ..
            } = &request.subject
            {
                // An approved statement not run yet: its approval is voided (marked used).
                self.forget_text(&request.id);
                self.use_statement_approval(
                    &request.identity,
                    &request.connection,
                    statement_digest,
                    Some(&request.id),
                    "(revoked)",
                )
                .await
                .map_err(internal)?;
            }
        }
        if action == "revoke" {
            if let Some(grant_id) = request.grant_id.clone() {
                let (by, why) = (approver.name.clone(), rationale.to_string());
                let gid = grant_id.clone();
                self.blocking(move |s| s.revoke_grant(&gid, now, &by, Some(&why)))
                    .await
                    .map_err(internal)?;
                self.revocations.revoke(&grant_id);
            }
        }
        let record = to_record(&request, version + 1);
        let saved = self
            .blocking(move |s| s.update_access_request(&record, version))
            .await
            .map_err(internal)?;
        if !saved {
            return Err(ServiceError::new(
                StatusCode::CONFLICT,
                "the request changed while deciding; read it again and retry",
            ));
        }
        tracing::info!(request = %request.id, action, approver = %approver.name, status = request.status.as_str(), "access request decided");
        self.notify("request_decided", &request);
        self.changed.send_modify(|n| *n += 1);
        Ok(request)
    }

    /// Expires pending requests nobody decided in time (recorded once each).
    pub async fn sweep(&self) -> Result<()> {
        // Texts with literals whose statement can no longer run.
        let now = Timestamp::now();
        self.literal_texts
            .lock()
            .unwrap()
            .retain(|_, k| k.until > now);
        let filter = AccessRequestFilter {
            status: Some("pending".into()),
            ..Default::default()
        };
        let pending = self
            .blocking(move |s| s.list_access_requests(&filter))
            .await?;
        let now = Timestamp::now();
        for r in pending.into_iter().filter(|r| r.expires_at <= now) {
            let _one_at_a_time = self.deciding.lock().await;
            let mut request = from_record(&r)?;
            request.status = RequestStatus::Expired;
            let record = to_record(&request, r.version + 1);
            let version = r.version;
            if self
                .blocking(move |s| s.update_access_request(&record, version))
                .await?
            {
                let mut d = EventDraft::new(Event::AccessRequestExpired(AccessRequestExpired {
                    request_id: request.id.clone(),
                    expired_at: request.expires_at,
                    identity_name: Some(request.identity.clone()),
                    connection_name: Some(request.connection.clone()),
                }));
                d.connection = Some(request.connection.as_str().into());
                self.sink.append_detached(d);
                self.forget_text(&request.id);
                self.notify("request_expired", &request);
                self.changed.send_modify(|n| *n += 1);
            }
        }
        // Grants from approvals that reached their end: approvers hear of it.
        let filter = AccessRequestFilter {
            status: Some("approved".into()),
            limit: Some(1000),
            ..Default::default()
        };
        let approved = self
            .blocking(move |s| s.list_access_requests(&filter))
            .await?;
        let recent = Timestamp::from_micros(now.as_micros() - 300_000_000);
        for r in approved {
            let Some(grant_id) = r.grant_id.clone() else {
                continue;
            };
            if self.expiry_notified.lock().unwrap().contains(&grant_id) {
                continue;
            }
            let gid = grant_id.clone();
            let Some(grant) = self.blocking(move |s| s.grant(&gid)).await? else {
                continue;
            };
            let ended = grant.revoked_at.is_none()
                && grant.expires_at.is_some_and(|e| e <= now && e > recent);
            if ended {
                self.expiry_notified.lock().unwrap().insert(grant_id);
                self.notify("grant_expired", &from_record(&r)?);
            }
        }
        Ok(())
    }

    /// Sends `event` about `request` to every webhook that wants it, in the background; every
    /// attempt is recorded.
    fn notify(&self, event: &str, request: &AccessRequest) {
        let hooks: Vec<_> = self
            .webhooks
            .iter()
            .filter(|(h, _)| h.wants(event))
            .cloned()
            .collect();
        if hooks.is_empty() {
            return;
        }
        let summary = match event {
            "request_created" => format!(
                "{} asks for access to {} (request {})",
                request.identity, request.connection, request.id
            ),
            "grant_expired" => format!(
                "the grant of access request {} ({} on {}) expired",
                request.id, request.identity, request.connection
            ),
            _ => format!(
                "access request {} of {} on {} is {}",
                request.id,
                request.identity,
                request.connection,
                request.status.as_str()
            ),
        };
        let n = Notification {
            event: event.to_string(),
            data: summary_json(request),
            approve_url: self.url_of(&request.id),
            summary,
        };
        for (hook, secret) in hooks {
            let (http, sink, n, subject) = (
                self.http.clone(),
                self.sink.clone(),
                n.clone(),
                request.id.clone(),
            );
            tokio::spawn(async move {
                webhook::deliver(&http, &hook, secret.expose().as_bytes(), &n, |a| {
                    sink.append_detached(EventDraft::new(Event::WebhookDelivery(
                        WebhookDelivery {
                            webhook: a.webhook,
                            notification: a.event,
                            subject_id: subject.clone(),
                            attempt: a.attempt,
                            delivered: a.delivered,
                            http_status: a.status,
                            error: a.error,
                        },
                    )));
                })
                .await;
            });
        }
    }
}

impl Approvals {
    /// What `show` adds for a held statement: its text with literals for a human whose groups
    /// the review reveals them to (proven by their own token; recorded as
    /// `StatementLiteralsShown` before it is shown), and the use of its approval.
    async fn show_statement(
        &self,
        caller: &Caller,
        request: &AccessRequest,
        policy: &str,
        shown: &mut serde_json::Value,
    ) -> Result<()> {
        let review = self
            .policies
            .iter()
            .find(|p| p.name == policy)
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
        let literals = match (self.kept_text(&request.id), may_see, viewer) {
            (Some(text), true, Some(viewer)) => {
                let mut d = EventDraft::new(Event::StatementLiteralsShown(
                    vigil_core::event::StatementLiteralsShown {
                        request_id: request.id.clone(),
                        viewer: viewer.name.clone(),
                        viewer_auth: viewer.auth_method.as_str().to_string(),
                    },
                ));
                d.identity = Some(viewer.clone());
                d.connection = Some(request.connection.as_str().into());
                // Who saw a statement's values is on record before they see it.
                self.sink
                    .append(d)
                    .await
                    .context("cannot record that the literals were shown")?;
                shown["subject"]["statement"]["text_with_literals"] = serde_json::json!(text);
                "shown"
            }
            (Some(_), _, _) => "withheld",
            (None, _, _) => "not_kept",
        };
        shown["literals"] = serde_json::json!(literals);
        let id = request.id.clone();
        if let Some(a) = self.blocking(move |s| s.statement_approval(&id)).await? {
            shown["statement_approval"] = serde_json::json!({
                "approved_at": a.approved_at,
                "expires_at": a.expires_at,
                "used_at": a.used_at,
                "used_session": a.used_session,
            });
        }
        Ok(())
    }
}

/// A request as the API shows it (and notifications carry it).
fn summary_json(r: &AccessRequest) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["status"] = serde_json::json!(r.status.as_str());
    v
}

/// The gateway's side of approvals: a session without a grant raises (or reuses) a request.
pub struct Gate(pub Arc<Approvals>);

impl ApprovalGate for Gate {
    fn on_missing_grant<'a>(
        &'a self,
        ask: AccessAsk<'a>,
    ) -> BoxFuture<'a, Result<PendingAccess, String>> {
        Box::pin(async move {
            let identity = ask.principal.name.as_str();
            let Some((policy, rule)) = self.0.policy_for(identity, ask.connection, None) else {
                return Ok(PendingAccess::NotApplicable);
            };
            let (policy, rule) = (policy.name.clone(), rule.clone());
            let request = match self.0.pending(identity, ask.connection, &policy).await {
                Ok(Some(r)) => r,
                Ok(None) => self
                    .0
                    .create(
                        identity,
                        ask.connection,
                        Some(&policy),
                        ask.reason.map(str::to_string),
                        Some(ask.client_addr.to_string()),
                        None,
                        Some(Arc::new(ask.principal.clone())),
                    )
                    .await
                    .map_err(|e| format!("{e:#}"))?,
                Err(e) => return Err(format!("{e:#}")),
            };
            let how = self.0.how_to_approve(&request.id);
            let message = format!(
                "access to connection \"{}\" needs approval: access request {} is pending",
                ask.connection, request.id
            );
            Ok(match rule.mode {
                PendingMode::Fail => PendingAccess::Fail {
                    message,
                    hint: format!("{how}; then connect again"),
                },
                PendingMode::Wait => PendingAccess::Wait {
                    notice: format!(
                        "{message}; waiting up to {} for a decision ({how})",
                        humantime_serde::re::humantime::format_duration(rule.wait_timeout)
                    ),
                    decided: Box::pin(self.0.clone().wait_decided(
                        request.id,
                        rule.wait_timeout,
                        "connect again",
                    )),
                },
            })
        })
    }

    fn elevations(&self, principal: &Principal, connection: &str) -> Vec<Elevation> {
        self.0
            .approval_policies(&principal.name, connection)
            .into_iter()
            .map(|(p, _)| Elevation {
                policy: p.name.clone(),
                scope: Arc::new(p.scope.clone()),
            })
            .collect()
    }

    fn elevate<'a>(
        &'a self,
        ask: ElevationAsk<'a>,
    ) -> BoxFuture<'a, Result<Pending<Arc<Grant>>, String>> {
        Box::pin(async move {
            let approvals = &self.0;
            let identity = ask.principal.name.as_str();
            let Some((policy, rule)) =
                approvals.policy_for(identity, ask.connection, Some(ask.policy))
            else {
                return Err(format!(
                    "policy {:?} no longer lets {identity:?} ask for approval",
                    ask.policy
                ));
            };
            let (policy, rule) = (policy.name.clone(), rule.clone());
            let fail = |e: anyhow::Error| format!("{e:#}");
            // Approved since the session started (this session's request, another's, or one
            // raised ahead of time): the session takes the grant on.
            if let Some(grant) = approvals
                .live_approved_grant(identity, ask.connection, &policy)
                .await
                .map_err(fail)?
            {
                return Ok(Pending::Ready(Arc::new(grant)));
            }
            let request = approvals
                .pending_or_raise(
                    approvals.pending(identity, ask.connection, &policy),
                    || AccessRequest {
                        duration: rule.max_duration,
                        // Reasons come from clients: bounded, and never echoed into logs.
                        reason: ask.reason.map(|r| r.chars().take(500).collect()),
                        client_addr: Some(ask.client_addr.to_string()),
                        ..Approvals::draft(
                            identity,
                            ask.connection,
                            Subject::Scope {
                                policy: policy.clone(),
                                session_id: ask.session_id.to_string(),
                                fingerprint: ask.shape.fingerprint.clone(),
                                text: ask.shape.text.clone(),
                            },
                            rule.pending_expiry,
                        )
                    },
                    ask.principal,
                )
                .await
                .map_err(fail)?;
            let id = request.id.clone();
            let how = approvals.how_to_approve(&id);
            let message = format!(
                "this statement needs the scope of policy \"{policy}\", which requires approval: access request {id} is pending"
            );
            Ok(match rule.mode {
                PendingMode::Fail => Pending::Fail {
                    message,
                    hint: format!(
                        "nothing was run; {how}; then send the statement again (it runs under the approved grant until that grant expires; the session keeps its other grants)"
                    ),
                    request_id: id,
                },
                PendingMode::Wait => {
                    let approvals = approvals.clone();
                    let waited = id.clone();
                    Pending::Wait {
                        notice: format!(
                            "{message}; the statement waits up to {} for a decision ({how})",
                            humantime_serde::re::humantime::format_duration(rule.wait_timeout)
                        ),
                        request_id: id,
                        decided: Box::pin(async move {
                            approvals
                                .clone()
                                .wait_decided(
                                    waited.clone(),
                                    rule.wait_timeout,
                                    "send the statement again",
                                )
                                .await?;
                            approvals.granted(&waited).await
                        }),
                    }
                }
            })
        })
    }
}

impl AccessRequestService for Approvals {
    fn authenticate<'a>(
        &'a self,
        bearer: &'a str,
    ) -> ApiFuture<'a, Result<Arc<Principal>, String>> {
        Box::pin(async move {
            let identity = if bearer.matches('.').count() == 2 {
                self.authenticator
                    .oidc()
                    .verify(bearer)
                    .await
                    .map_err(|r| r.client_message())?
                    .identity
            } else {
                let hash = vigil_identity::tokens::hash(bearer);
                let tokens = self.authenticator.tokens().clone();
                tokio::task::spawn_blocking(move || tokens.check_hash(&hash))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|r| r.client_message())?
                    .identity
            };
            self.authenticator
                .authenticate(&identity, bearer)
                .await
                .map_err(|r| r.client_message())
        })
    }

    fn create<'a>(
        &'a self,
        caller: &'a Caller,
        body: CreateBody,
    ) -> ApiFuture<'a, Result<serde_json::Value, ServiceError>> {
        Box::pin(async move {
            let (identity, principal) =
                match (caller, &body.identity) {
                    (Caller::Admin, Some(i)) => (i.clone(), None),
                    (Caller::Admin, None) => return Err(ServiceError::new(
                        StatusCode::BAD_REQUEST,
                        "with the admin token, name the identity the request is for (\"identity\")",
                    )),
                    (Caller::Identity(p), None) => (p.name.clone(), Some(p.clone())),
                    (Caller::Identity(p), Some(i)) if *i == p.name => (i.clone(), Some(p.clone())),
                    (Caller::Identity(_), Some(_)) => {
                        return Err(ServiceError::new(
                            StatusCode::FORBIDDEN,
                            "an identity may ask only for itself",
                        ))
                    }
                };
            let duration = body
                .duration
                .as_deref()
                .map(humantime_serde::re::humantime::parse_duration)
                .transpose()
                .map_err(|e| {
                    ServiceError::new(StatusCode::BAD_REQUEST, format!("duration: {e}"))
                })?;
            if self
                .policy_for(&identity, &body.connection, body.policy.as_deref())
                .is_none()
            {
                return Err(ServiceError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    match &body.policy {
                        Some(p) => format!(
                            "policy {p:?} is not an approval-required policy that binds identity {identity:?} on connection {:?}",
                            body.connection
                        ),
                        None => format!(
                            "no policy lets identity {identity:?} ask for approval on connection {:?}",
                            body.connection
                        ),
                    },
                ));
            }
            let r = self
                .create(
                    &identity,
                    &body.connection,
                    body.policy.as_deref(),
                    body.reason,
                    None,
                    duration,
                    principal,
                )
                .await
                .map_err(|e| {
                    ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
                })?;
            Ok(summary_json(&r))
        })
    }

    fn list<'a>(
        &'a self,
        caller: &'a Caller,
        query: ListQuery,
    ) -> ApiFuture<'a, Result<serde_json::Value, ServiceError>> {
        Box::pin(async move {
            let mut filter = AccessRequestFilter {
                identity: query.identity,
                connection: query.connection,
                status: query.status,
                grant_id: None,
                limit: Some(query.limit.unwrap_or(100).min(10_000)),
            };
            // Machines see their own requests; humans and the admin see all.
            if let Caller::Identity(p) = caller {
                if p.kind != IdentityKind::Human {
                    filter.identity = Some(p.name.clone());
                }
            }
            let found = self
                .blocking(move |s| s.list_access_requests(&filter))
                .await
                .map_err(|e| ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let list: Vec<serde_json::Value> = found
                .iter()
                .filter_map(|r| from_record(r).ok())
                .map(|r| summary_json(&r))
                .collect();
            Ok(serde_json::json!({ "access_requests": list }))
        })
    }

    fn show<'a>(
        &'a self,
        caller: &'a Caller,
        id: &'a str,
    ) -> ApiFuture<'a, Result<serde_json::Value, ServiceError>> {
        Box::pin(async move {
            let not_found =
                || ServiceError::new(StatusCode::NOT_FOUND, format!("no access request {id}"));
            let (r, _) = self
                .load(id)
                .await
                .map_err(|e| ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .ok_or_else(not_found)?;
            if let Caller::Identity(p) = caller {
                if p.kind != IdentityKind::Human && p.name != r.identity {
                    return Err(not_found());
                }
            }
            let mut shown = summary_json(&r);
            if let Subject::Statement { policy, .. } = &r.subject {
                self.show_statement(caller, &r, policy, &mut shown)
                    .await
                    .map_err(|e| {
                        ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
                    })?;
            }
            Ok(shown)
        })
    }

    fn decide<'a>(
        &'a self,
        caller: &'a Caller,
        id: &'a str,
        action: &'a str,
        body: DecideBody,
    ) -> ApiFuture<'a, Result<serde_json::Value, ServiceError>> {
        Box::pin(async move {
            let approver = self.approver(caller, body.acting_as.as_deref())?;
            let rationale = body.reason.unwrap_or_default();
            let r = self.decide_as(approver, id, action, &rationale).await?;
            Ok(summary_json(&r))
        })
    }
}

/// Per-statement review on the data path: which statements are held (from the config, in
/// memory), and for those, the approval used or the request raised (through the store).
pub struct Reviewer(pub Arc<Approvals>);

impl Reviewer {
    /// Whether `access` holds a statement of a kind `kinds` lists.
    pub(crate) fn needs_review_of(kinds: &[String], access: &vigil_sql::Access) -> bool {
        let has_where = access.shape.text.to_ascii_uppercase().contains("WHERE");
        access.statements.iter().any(|s| {
            kinds.iter().any(|k| match k.as_str() {
                "ddl" => s.class == vigil_sql::CommandClass::Ddl,
                "delete_without_where" => s.command == "DELETE" && !has_where,
                "update_without_where" => s.command == "UPDATE" && !has_where,
                _ => false,
            })
        })
    }
}

impl vigil_pg::StatementReview for Reviewer {
    fn needs_review(&self, grant: &Grant, access: &vigil_sql::Access) -> bool {
        self.0
            .review_of(grant)
            .is_some_and(|review| Self::needs_review_of(&review.statements, access))
    }

    fn hold<'a>(
        &'a self,
        ask: vigil_pg::ReviewAsk<'a>,
    ) -> BoxFuture<'a, Result<Pending<String>, String>> {
        Box::pin(async move {
            let approvals = &self.0;
            let review = approvals
                .review_of(ask.grant)
                .ok_or("the grant's policy no longer reviews statements")?
                .clone();
            let policy = ask.grant.policy.clone().unwrap_or_default();
            let identity = ask.principal.name.as_str();
            let digest = statement_digest(ask.exact_text);
            let fail = |e: anyhow::Error| format!("{e:#}");
            // Approved and not used yet: used now, durably, before the statement runs.
            if let Some(id) = approvals
                .use_statement_approval(identity, ask.connection, &digest, None, ask.session_id)
                .await
                .map_err(fail)?
            {
                return Ok(Pending::Ready(id));
            }
            let request = approvals
                .pending_or_raise(
                    approvals.pending_statement(identity, ask.connection, &digest),
                    || {
                        Approvals::draft(
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
                .await
                .map_err(fail)?;
            if !review.reveal_literals_groups.is_empty() {
                if let Some(text) = ask.literal_text {
                    // Until the request expires, and as long again for the approval's use.
                    let until = later(request.expires_at, review.pending_expiry);
                    approvals.keep_text(&request.id, text, until);
                }
            }
            let id = request.id.clone();
            let how = approvals.how_to_approve(&id);
            Ok(match review.mode {
                PendingMode::Fail => Pending::Fail {
                    message: format!(
                        "this statement needs a reviewer's approval: access request {id} is pending; send it again, unchanged, once approved (it then runs once)"
                    ),
                    hint: format!("nothing was run; {how}"),
                    request_id: id,
                },
                PendingMode::Wait => {
                    let approvals = approvals.clone();
                    let (identity, connection, session) = (
                        identity.to_string(),
                        ask.connection.to_string(),
                        ask.session_id.to_string(),
                    );
                    let waited = id.clone();
                    Pending::Wait {
                        notice: format!(
                            "this statement is held for a reviewer's approval: access request {id} is pending; it runs once approved, waiting up to {} ({how})",
                            humantime_serde::re::humantime::format_duration(review.wait_timeout)
                        ),
                        request_id: id,
                        decided: Box::pin(async move {
                            approvals
                                .clone()
                                .wait_decided(
                                    waited.clone(),
                                    review.wait_timeout,
                                    "send the statement again",
                                )
                                .await?;
                            match approvals
                                .use_statement_approval(
                                    &identity,
                                    &connection,
                                    &digest,
                                    Some(&waited),
                                    &session,
                                )
                                .await
                            {
                                Ok(Some(id)) => Ok(id),
                                Ok(None) => Err(format!(
                                    "access request {waited} was approved, but its approval was used by another session (an approval runs its statement once); send the statement again"
                                )),
                                Err(e) => {
                                    tracing::error!(error = %format!("{e:#}"), "cannot use a statement approval");
                                    Err(format!(
                                        "Vigil could not record the use of the approval of access request {waited}, so the statement was not run"
                                    ))
                                }
                            }
                        }),
                    }
                }
            })
        })
    }
}

/// Expires pending requests every `every`.
pub async fn sweep(approvals: Arc<Approvals>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = approvals.sweep().await {
            tracing::warn!(error = %format!("{e:#}"), "cannot expire access requests");
        }
    }
}
