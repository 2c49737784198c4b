//! `vigil grant list|revoke`: the live grants sessions run under, and the operator's way to
//! end one. A revocation is recorded (`GrantRevoked`) before it takes effect; a running
//! gateway reads it from the store within a second and ends every session under the grant.

use super::open;
use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use vigil_core::event::GrantRevoked;
use vigil_core::{Event, EventDraft, Timestamp};
use vigil_store::{GrantFilter, GrantRecord};

#[derive(Subcommand)]
pub enum GrantCommand {
    /// List grants: live ones by default, with --all also revoked and expired ones.
    List {
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// Include revoked and expired grants.
        #[arg(long)]
        all: bool,
        /// Print JSON lines (with each grant's scope) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a grant: its live sessions end (idle ones at once, busy ones before their next
    /// statement) and no new session starts under it.
    Revoke {
        /// The grant's id (see `vigil grant list`).
        id: String,
        /// Why, for the audit trail (recorded as given: write no patient data here).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Longest reason kept: a sentence, not a document.
const MAX_REASON: usize = 500;

fn state(g: &GrantRecord, now: Timestamp) -> &'static str {
    if g.revoked_at.is_some() {
        "revoked"
    } else if now < g.not_before {
        "pending"
    } else if g.expires_at.is_some_and(|e| e <= now) || g.expired_at.is_some() {
        "expired"
    } else {
        "live"
    }
}

pub fn run(cmd: GrantCommand) -> Result<()> {
    match cmd {
        GrantCommand::List {
            identity,
            connection,
            all,
            json,
            store,
        } => {
            let (_, store) = open(&store)?;
            let now = Timestamp::now();
            let grants = store.grants.list_grants(&GrantFilter {
                identity,
                connection,
                live_at: (!all).then_some(now),
            })?;
            if !json {
                println!(
                    "{:<38} {:<20} {:<12} {:<24} {:<28} {:<28} {:<8} SCOPE",
                    "ID", "IDENTITY", "CONNECTION", "SOURCE", "CREATED", "EXPIRES", "STATE"
                );
            }
            for g in grants {
                let state = state(&g, now);
                let source = match &g.policy {
                    Some(p) => format!("{}:{p}", g.source),
                    None => g.source.clone(),
                };
                if json {
                    let scope: serde_json::Value =
                        serde_json::from_str(&g.scope_json).unwrap_or(serde_json::Value::Null);
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": g.id, "identity": g.identity, "connection": g.connection,
                            "source": g.source, "policy": g.policy, "state": state,
                            "created_at": g.created_at, "not_before": g.not_before,
                            "expires_at": g.expires_at, "revoked_at": g.revoked_at,
                            "revoked_by": g.revoked_by, "revoke_reason": g.revoke_reason,
                            "scope_digest": g.scope_digest, "scope": scope,
                        })
                    );
                } else {
                    println!(
                        "{:<38} {:<20} {:<12} {:<24} {:<28} {:<28} {:<8} {}",
                        g.id,
                        g.identity,
                        g.connection,
                        source,
                        g.created_at.to_string(),
                        g.expires_at
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "until revoked".into()),
                        state,
                        &g.scope_digest[..g.scope_digest.len().min(12)]
                    );
                }
            }
            Ok(())
        }
        GrantCommand::Revoke { id, reason, store } => {
            let reason = reason.trim().to_string();
            if reason.is_empty() {
                bail!("--reason must say why (it goes into the audit trail)");
            }
            if reason.chars().count() > MAX_REASON {
                bail!("--reason is longer than {MAX_REASON} characters");
            }
            let (config, store) = open(&store)?;
            let grant = store
                .grants
                .grant(&id)?
                .with_context(|| format!("no grant with id {id:?} (see `vigil grant list`)"))?;
            if let Some(at) = grant.revoked_at {
                bail!(
                    "grant {id} was already revoked at {at} by {}",
                    grant.revoked_by.as_deref().unwrap_or("?")
                );
            }
            let by = super::token::operator();
            let writer = super::audit::cli_writer(config.as_ref(), store.audit.clone())?;
            // The record first: no revocation takes effect that the trail does not show.
            let mut draft = EventDraft::new(Event::GrantRevoked(GrantRevoked {
                grant_id: id.clone(),
                revoked_by: by.clone(),
                reason: Some(reason.clone()),
            }));
            draft.connection = Some(grant.connection.as_str().into());
            vigil_audit::wait_durable(writer.append(draft)).context(
                "cannot record the revocation in the audit trail, so the grant was not revoked",
            )?;
            store
                .grants
                .revoke_grant(&id, Timestamp::now(), &by, Some(&reason))?;
            writer.shutdown()?;
            eprintln!(
                "grant {id} of identity {} on connection {} revoked; a running gateway ends its sessions within a second",
                grant.identity, grant.connection
            );
            Ok(())
        }
    }
}
