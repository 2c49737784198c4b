//! Test doubles of what the service takes: a store in memory, an audit trail that records
//! (and can be made to refuse), and a set of revoked grants. No sockets, no files.

use crate::ports::{
    ApprovalStore, ApprovalUse, GrantRevocations, RequestFilter, StatementApproval, StoreFailure,
    Versioned,
};
use crate::rules::AccessRequest;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use vigil_core::{AuditUnavailable, DurableTicket, Event, EventDraft, EventSink, Timestamp};
use vigil_policy::Grant;

/// Requests, grants and statement approvals in memory, as a real store keeps them.
#[derive(Default)]
pub(crate) struct MemoryStore {
    /// In insertion order (oldest first).
    requests: Mutex<Vec<Versioned>>,
    grants: Mutex<Vec<Grant>>,
    approvals: Mutex<Vec<StatementApproval>>,
    pub grant_inserts: AtomicUsize,
    /// Grants are refused while set.
    pub refusing_grants: AtomicBool,
    /// Every call fails while set.
    pub down: AtomicBool,
    /// Updates lose to another decider (as if another gateway changed the request first).
    pub overtaken: AtomicBool,
}

impl MemoryStore {
    fn up(&self) -> Result<(), StoreFailure> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreFailure::Unavailable(
                "store error: disk I/O error".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn grants(&self) -> Vec<Grant> {
        self.grants.lock().unwrap().clone()
    }

    pub(crate) fn request(&self, id: &str) -> AccessRequest {
        self.access_request(id).unwrap().unwrap().request
    }

    pub(crate) fn requests(&self) -> Vec<AccessRequest> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|v| v.request.clone()).collect()
    }

    /// Makes a stored request expire at `at` (as if created long ago).
    pub(crate) fn set_expiry(&self, id: &str, at: Timestamp) {
        let mut requests = self.requests.lock().unwrap();
        let v = requests.iter_mut().find(|v| v.request.id == id).unwrap();
        v.request.expires_at = at;
    }
}

impl ApprovalStore for MemoryStore {
    fn access_request(&self, id: &str) -> Result<Option<Versioned>, StoreFailure> {
        self.up()?;
        let requests = self.requests.lock().unwrap();
        Ok(requests.iter().find(|v| v.request.id == id).cloned())
    }

    fn access_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<Result<Versioned, StoreFailure>>, StoreFailure> {
        self.up()?;
        let requests = self.requests.lock().unwrap();
        let matches = |r: &AccessRequest| {
            filter.identity.as_ref().is_none_or(|i| *i == r.identity)
                && filter
                    .connection
                    .as_ref()
                    .is_none_or(|c| *c == r.connection)
                && filter.status.is_none_or(|s| s == r.status)
                && filter
                    .grant_id
                    .as_ref()
                    .is_none_or(|g| Some(g) == r.grant_id.as_ref())
        };
        Ok(requests
            .iter()
            .rev()
            .filter(|v| matches(&v.request))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .map(Ok)
            .collect())
    }

    fn insert_access_request(&self, request: &AccessRequest) -> Result<(), StoreFailure> {
        self.up()?;
        self.requests.lock().unwrap().push(Versioned {
            request: request.clone(),
            version: 1,
        });
        Ok(())
    }

    fn update_access_request(
        &self,
        request: &AccessRequest,
        version: u64,
    ) -> Result<bool, StoreFailure> {
        self.up()?;
        let mut requests = self.requests.lock().unwrap();
        let Some(stored) = requests.iter_mut().find(|v| v.request.id == request.id) else {
            return Ok(false);
        };
        if stored.version != version || self.overtaken.load(Ordering::SeqCst) {
            return Ok(false);
        }
        *stored = Versioned {
            request: request.clone(),
            version: version + 1,
        };
        Ok(true)
    }

    fn live_grants(
        &self,
        identity: &str,
        connection: &str,
        at: Timestamp,
    ) -> Result<Vec<Grant>, StoreFailure> {
        self.up()?;
        let grants = self.grants.lock().unwrap();
        Ok(grants
            .iter()
            .filter(|g| g.identity == identity && g.connection == connection)
            .filter(|g| g.revoked_at.is_none() && g.expires_at.is_none_or(|e| e > at))
            .map(|g| Grant {
                request_id: None,
                ..g.clone()
            })
            .collect())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreFailure> {
        self.up()?;
        let grants = self.grants.lock().unwrap();
        Ok(grants.iter().find(|g| g.id == id).map(|g| Grant {
            request_id: None,
            ..g.clone()
        }))
    }

    fn insert_grant(&self, grant: &Grant) -> Result<(), StoreFailure> {
        self.up()?;
        if self.refusing_grants.load(Ordering::SeqCst) {
            return Err(StoreFailure::Unavailable(
                "store error: constraint failed".into(),
            ));
        }
        self.grant_inserts.fetch_add(1, Ordering::SeqCst);
        self.grants.lock().unwrap().push(grant.clone());
        Ok(())
    }

    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: &str,
    ) -> Result<(), StoreFailure> {
        self.up()?;
        let mut grants = self.grants.lock().unwrap();
        if let Some(g) = grants
            .iter_mut()
            .find(|g| g.id == id && g.revoked_at.is_none())
        {
            g.revoked_at = Some(at);
            g.revoked_by = Some(by.to_string());
            g.revoke_reason = Some(reason.to_string());
        }
        Ok(())
    }

    fn insert_statement_approval(&self, approval: &StatementApproval) -> Result<(), StoreFailure> {
        self.up()?;
        self.approvals.lock().unwrap().push(approval.clone());
        Ok(())
    }

    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApproval>, StoreFailure> {
        self.up()?;
        let approvals = self.approvals.lock().unwrap();
        Ok(approvals
            .iter()
            .find(|a| a.request_id == request_id)
            .cloned())
    }

    fn use_statement_approval(&self, ask: &ApprovalUse) -> Result<Option<String>, StoreFailure> {
        self.up()?;
        let mut approvals = self.approvals.lock().unwrap();
        let found = approvals.iter_mut().find(|a| {
            a.identity == ask.identity
                && a.connection == ask.connection
                && a.statement_digest == ask.statement_digest
                && ask.request_id.as_ref().is_none_or(|r| *r == a.request_id)
                && a.used_at.is_none()
                && a.expires_at > ask.at
        });
        Ok(found.map(|a| {
            a.used_at = Some(ask.at);
            a.used_session = Some(ask.session.clone());
            a.request_id.clone()
        }))
    }
}

/// An audit trail that keeps what it is given, and refuses everything while `refusing`.
#[derive(Default)]
pub(crate) struct RecordingSink {
    drafts: Mutex<Vec<EventDraft>>,
    pub refusing: AtomicBool,
}

impl RecordingSink {
    pub(crate) fn events(&self) -> Vec<Event> {
        let drafts = self.drafts.lock().unwrap();
        drafts.iter().map(|d| d.event.clone()).collect()
    }

    pub(crate) fn drafts(&self) -> Vec<EventDraft> {
        self.drafts.lock().unwrap().clone()
    }

    /// The `type` of each record, in order.
    pub(crate) fn kinds(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl EventSink for RecordingSink {
    fn append_all(&self, drafts: Vec<EventDraft>) -> DurableTicket {
        if self.refusing.load(Ordering::SeqCst) {
            return DurableTicket::ready(Err(AuditUnavailable("disk full".into())));
        }
        let mut kept = self.drafts.lock().unwrap();
        kept.extend(drafts);
        DurableTicket::ready(Ok(kept.len() as u64))
    }

    fn append_detached(&self, draft: EventDraft) {
        self.drafts.lock().unwrap().push(draft);
    }
}

/// Revoked grant ids.
#[derive(Default)]
pub(crate) struct RevokedSet(pub Mutex<HashSet<String>>);

impl GrantRevocations for RevokedSet {
    fn is_revoked(&self, grant_id: &str) -> bool {
        self.0.lock().unwrap().contains(grant_id)
    }
    fn revoke(&self, grant_id: &str) {
        self.0.lock().unwrap().insert(grant_id.to_string());
    }
}
