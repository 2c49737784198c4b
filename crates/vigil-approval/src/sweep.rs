//! Expiry: pending requests nobody decided in time are expired (recorded once each), and
//! approvers hear when a grant from an approval reached its end.

use crate::error::ApprovalError;
use crate::notify::Notice;
use crate::ports::RequestFilter;
use crate::rules::RequestStatus;
use crate::service::Approvals;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::AccessRequestExpired;
use vigil_core::{Event, EventDraft, Timestamp};

/// Grants that ended longer ago than this are not notified (after a restart, say).
const RECENT_MICROS: i64 = 300_000_000;

impl Approvals {
    /// Sweeps every `every`, for ever.
    pub async fn sweep_every(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "cannot expire access requests");
            }
        }
    }

    /// Expires pending requests nobody decided in time, and notifies grants that ended.
    pub async fn sweep(&self) -> Result<(), ApprovalError> {
        // Texts with literals whose statement can no longer run.
        self.literal_texts.prune();
        let filter = RequestFilter {
            status: Some(RequestStatus::Pending),
            ..Default::default()
        };
        let pending = self.blocking(move |s| s.access_requests(&filter)).await?;
        let now = Timestamp::now();
        for row in pending {
            let stored = match row {
                Ok(stored) => stored,
                Err(e) => {
                    // Never approvable either: loading it fails too.
                    tracing::warn!(error = %e, "cannot expire an unreadable access request");
                    continue;
                }
            };
            if stored.request.expires_at > now {
                continue;
            }
            let _one_at_a_time = self.deciding.lock().await;
            let mut request = stored.request;
            request.status = RequestStatus::Expired;
            let (saved, version) = (request.clone(), stored.version);
            if !self
                .blocking(move |s| s.update_access_request(&saved, version))
                .await?
            {
                continue;
            }
            let mut d = EventDraft::new(Event::AccessRequestExpired(AccessRequestExpired {
                request_id: request.id.clone(),
                expired_at: request.expires_at,
                identity_name: Some(request.identity.clone()),
                connection_name: Some(request.connection.clone()),
            }));
            d.connection = Some(request.connection.as_str().into());
            // It already happened (nothing waits on it): recorded in the background.
            self.sink.append_detached(d);
            self.literal_texts.forget(&request.id);
            self.notifier
                .notify(Notice::RequestExpired, &request, &self.sink);
            self.changed();
        }
        self.notify_ended_grants(now).await
    }

    /// Grants from approvals that reached their end: approvers hear of it, once.
    async fn notify_ended_grants(&self, now: Timestamp) -> Result<(), ApprovalError> {
        let filter = RequestFilter {
            status: Some(RequestStatus::Approved),
            limit: Some(1000),
            ..Default::default()
        };
        let approved = self.blocking(move |s| s.access_requests(&filter)).await?;
        let recent = Timestamp::from_micros(now.as_micros() - RECENT_MICROS);
        // A damaged row is only a notification missed.
        for request in approved.into_iter().flatten().map(|v| v.request) {
            let Some(grant_id) = request.grant_id.clone() else {
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
                self.notifier
                    .notify(Notice::GrantExpired, &request, &self.sink);
            }
        }
        Ok(())
    }
}
