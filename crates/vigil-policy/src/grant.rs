//! Grants: the live instance of a scope for one identity on one connection, for a time window.

use crate::policy::PolicyConfig;
use crate::scope::{Denial, FunctionCatalog, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_access::Access;
use vigil_core::Timestamp;

/// Where a grant came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    /// A standing policy in the configuration.
    Policy,
    /// An approved access request.
    Approval,
}

impl GrantSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Policy => "policy",
            GrantSource::Approval => "approval",
        }
    }
}

/// A grant, as stored and as carried by sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub identity: String,
    pub connection: String,
    pub source: GrantSource,
    /// The policy it was issued from (source `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub scope: Scope,
    pub scope_digest: String,
    pub not_before: Timestamp,
    /// `None`: until revoked (or until the policy changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
    /// The access request whose approval issued the grant (source `approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Why a grant is not live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotLive {
    NotYet,
    Expired,
    Revoked,
    /// Outside the scope's window (hours, weekdays).
    OutsideWindow,
}

impl Grant {
    /// A grant for `policy`'s scope, valid from `now` until its window closes (if it is open).
    pub fn from_policy(
        policy: &PolicyConfig,
        identity: &str,
        connection: &str,
        now: Timestamp,
        id: String,
    ) -> Option<Grant> {
        let expires_at = match &policy.scope.window {
            Some(w) => w.open_until(now)?,
            None => None,
        };
        Some(Grant {
            id,
            identity: identity.to_string(),
            connection: connection.to_string(),
            source: GrantSource::Policy,
            policy: Some(policy.name.clone()),
            scope_digest: policy.scope.digest(),
            scope: policy.scope.clone(),
            not_before: now,
            expires_at,
            created_at: now,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            request_id: None,
        })
    }

    /// Whether the grant may be used at `now`.
    pub fn live(&self, now: Timestamp) -> Result<(), NotLive> {
        if self.revoked_at.is_some() {
            return Err(NotLive::Revoked);
        }
        if now < self.not_before {
            return Err(NotLive::NotYet);
        }
        if self.expires_at.is_some_and(|e| now >= e) {
            return Err(NotLive::Expired);
        }
        if self.scope.window.as_ref().is_some_and(|w| !w.is_open(now)) {
            return Err(NotLive::OutsideWindow);
        }
        Ok(())
    }

    /// When the grant stops being usable without anyone acting: its expiry, or the end of its
    /// window's current opening.
    pub fn ends_at(&self, now: Timestamp) -> Option<Timestamp> {
        let window_end = self
            .scope
            .window
            .as_ref()
            .and_then(|w| w.open_until(now).flatten());
        match (self.expires_at, window_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The outcome of checking a statement against a session's grants.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Allowed by this grant.
    Allow(Arc<Grant>),
    /// Refused; the denial of the grant that came closest (the first one), if any.
    Deny {
        denial: Denial,
        grant_id: Option<String>,
    },
}

/// Checks `access` against `grants`: allowed if any live grant allows all of it.
pub fn decide(
    grants: &[Arc<Grant>],
    access: &Access,
    functions: &dyn FunctionCatalog,
    now: Timestamp,
) -> Decision {
    let mut first: Option<(Denial, String)> = None;
    // Bounds hold for the whole session: a grant without one cannot lift another's.
    let live = || grants.iter().filter(|g| g.live(now).is_ok());
    if let Err(denial) = crate::bounds::SessionBounds::of(live().map(|g| &g.scope)).check(access) {
        let bounded = live().find(|g| !crate::bounds::SessionBounds::of([&g.scope]).is_empty());
        return Decision::Deny {
            denial,
            grant_id: bounded.map(|g| g.id.clone()),
        };
    }
    for g in grants {
        if let Err(why) = g.live(now) {
            let reason = match why {
                NotLive::NotYet => "the grant is not valid yet",
                NotLive::Expired => "the grant has expired",
                NotLive::Revoked => "the grant was revoked",
                NotLive::OutsideWindow => "the grant's time window is closed",
            };
            first.get_or_insert((
                Denial {
                    rule: "grant_not_live",
                    reason: reason.into(),
                    sqlstate: "42501",
                },
                g.id.clone(),
            ));
            continue;
        }
        match g.scope.check(access, functions) {
            Ok(()) => return Decision::Allow(g.clone()),
            Err(d) => {
                first.get_or_insert((d, g.id.clone()));
            }
        }
    }
    match first {
        Some((denial, id)) => Decision::Deny {
            denial,
            grant_id: Some(id),
        },
        None => Decision::Deny {
            denial: Denial {
                rule: "no_grant",
                reason: "no grant allows this identity anything on this connection".into(),
                sqlstate: "42501",
            },
            grant_id: None,
        },
    }
}
