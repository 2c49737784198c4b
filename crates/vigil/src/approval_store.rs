//! vigil-approval's `ApprovalStore` over the store concerns it spans: requests kept as their
//! JSON (`AccessRequestStore`), grants as the gateway's grant records (`GrantStore`), approvals
//! of held statements as they are (`StatementApprovalStore`).

use std::sync::Arc;
use vigil_approval::{
    AccessRequest, ApprovalStore, ApprovalUse, RequestFilter, StatementApproval, StoreFailure,
    Versioned,
};
use vigil_core::Timestamp;
use vigil_policy::Grant;
use vigil_store::{
    AccessRequestFilter, AccessRequestRecord, AccessRequestStore, GrantFilter, GrantStore,
    StatementApprovalRecord, StatementApprovalStore, StoreError,
};

pub struct StoredApprovals {
    pub requests: Arc<dyn AccessRequestStore>,
    pub grants: Arc<dyn GrantStore>,
    pub statements: Arc<dyn StatementApprovalStore>,
}

fn failed(e: StoreError) -> StoreFailure {
    StoreFailure::Unavailable(e.to_string())
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

fn from_record(r: AccessRequestRecord) -> Result<Versioned, StoreFailure> {
    match serde_json::from_str(&r.body) {
        Ok(request) => Ok(Versioned {
            request,
            version: r.version,
        }),
        Err(_) => Err(StoreFailure::UnreadableRequest { id: r.id }),
    }
}

fn grant_from(r: &vigil_store::GrantRecord) -> Result<Grant, StoreFailure> {
    crate::grants::from_record(r).map_err(|_| StoreFailure::UnreadableGrant { id: r.id.clone() })
}

fn approval_to(a: &StatementApproval) -> StatementApprovalRecord {
    StatementApprovalRecord {
        request_id: a.request_id.clone(),
        identity: a.identity.clone(),
        connection: a.connection.clone(),
        statement_digest: a.statement_digest.clone(),
        approved_at: a.approved_at,
        expires_at: a.expires_at,
        used_at: a.used_at,
        used_session: a.used_session.clone(),
    }
}

fn approval_from(a: StatementApprovalRecord) -> StatementApproval {
    StatementApproval {
        request_id: a.request_id,
        identity: a.identity,
        connection: a.connection,
        statement_digest: a.statement_digest,
        approved_at: a.approved_at,
        expires_at: a.expires_at,
        used_at: a.used_at,
        used_session: a.used_session,
    }
}

impl ApprovalStore for StoredApprovals {
    fn access_request(&self, id: &str) -> Result<Option<Versioned>, StoreFailure> {
        self.requests
            .access_request(id)
            .map_err(failed)?
            .map(from_record)
            .transpose()
    }

    fn access_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<Result<Versioned, StoreFailure>>, StoreFailure> {
        let filter = AccessRequestFilter {
            identity: filter.identity.clone(),
            connection: filter.connection.clone(),
            status: filter.status.map(|s| s.as_str().to_string()),
            grant_id: filter.grant_id.clone(),
            limit: filter.limit,
        };
        let found = self
            .requests
            .list_access_requests(&filter)
            .map_err(failed)?;
        Ok(found.into_iter().map(from_record).collect())
    }

    fn insert_access_request(&self, request: &AccessRequest) -> Result<(), StoreFailure> {
        self.requests
            .insert_access_request(&to_record(request, 1))
            .map_err(failed)
    }

    fn update_access_request(
        &self,
        request: &AccessRequest,
        version: u64,
    ) -> Result<bool, StoreFailure> {
        self.requests
            .update_access_request(&to_record(request, version + 1), version)
            .map_err(failed)
    }

    fn live_grants(
        &self,
        identity: &str,
        connection: &str,
        at: Timestamp,
    ) -> Result<Vec<Grant>, StoreFailure> {
        let filter = GrantFilter {
            identity: Some(identity.to_string()),
            connection: Some(connection.to_string()),
            live_at: Some(at),
        };
        let found = self.grants.list_grants(&filter).map_err(failed)?;
        found.iter().map(grant_from).collect()
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreFailure> {
        self.grants
            .grant(id)
            .map_err(failed)?
            .as_ref()
            .map(grant_from)
            .transpose()
    }

    fn insert_grant(&self, grant: &Grant) -> Result<(), StoreFailure> {
        self.grants
            .insert_grant(&crate::grants::to_record(grant))
            .map_err(failed)
    }

    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: &str,
    ) -> Result<(), StoreFailure> {
        self.grants
            .revoke_grant(id, at, by, Some(reason))
            .map(drop)
            .map_err(failed)
    }

    fn insert_statement_approval(&self, approval: &StatementApproval) -> Result<(), StoreFailure> {
        self.statements
            .insert_statement_approval(&approval_to(approval))
            .map_err(failed)
    }

    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApproval>, StoreFailure> {
        Ok(self
            .statements
            .statement_approval(request_id)
            .map_err(failed)?
            .map(approval_from))
    }

    fn use_statement_approval(&self, ask: &ApprovalUse) -> Result<Option<String>, StoreFailure> {
        self.statements
            .use_statement_approval(
                &ask.identity,
                &ask.connection,
                &ask.statement_digest,
                ask.request_id.as_deref(),
                ask.at,
                &ask.session,
            )
            .map_err(failed)
    }
}
