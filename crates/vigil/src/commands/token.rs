//! `vigil token create|list|revoke`: Vigil service tokens. A token is printed once, at
//! creation; the store keeps only its hash. Each issue and revocation is an audit record.

use super::open;
use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use vigil_core::event::{TokenIssued, TokenRevoked};
use vigil_core::{Event, EventDraft, Timestamp};
use vigil_identity::TokenService;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token for an identity. Prints the token (once) on stdout.
    Create {
        /// The identity the token authenticates (must be declared in the config).
        #[arg(long)]
        identity: String,
        /// Lifetime, e.g. 30d, 12h, 90m, or "never".
        #[arg(long, default_value = "90d")]
        expires: String,
        /// A note for whoever lists tokens later (e.g. the pipeline that uses it).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        identity: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by id: sessions can no longer start with it.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            identity,
            expires,
            label,
            store,
        } => {
            let (config, store) = open(&store)?;
            match &config {
                Some(c) if !c.identities.iter().any(|i| i.name == identity) => bail!(
                    "identity {identity:?} is not declared in the config; add it under [[identities]] first"
                ),
                None => eprintln!("warning: no --config given, so {identity:?} is not checked against the declared identities"),
                _ => {}
            }
            let lifetime = vigil_identity::parse_expiry(&expires).context("--expires")?;
            let writer = super::audit::cli_writer(config.as_ref(), store.audit.clone())?;
            let service = TokenService::new(store.tokens);
            // The record first: no token exists that the trail does not show.
            let (token, record) = service.prepare(&identity, lifetime, label.as_deref())?;
            vigil_audit::wait_durable(writer.append(EventDraft::new(Event::TokenIssued(
                TokenIssued {
                    token_id: record.id.clone(),
                    identity_name: identity.clone(),
                    expires_at: record.expires_at,
                    issued_by: operator(),
                },
            ))))
            .context("cannot record the token in the audit trail, so it was not issued")?;
            service.insert(&record)?;
            writer.shutdown()?;
            println!("{token}");
            eprintln!(
                "token {} for identity {identity} ({}); it is shown only this once",
                record.id,
                match record.expires_at {
                    Some(t) => format!("expires {t}"),
                    None => "never expires".into(),
                }
            );
            Ok(())
        }
        TokenCommand::List {
            identity,
            json,
            store,
        } => {
            let (_, store) = open(&store)?;
            let tokens = TokenService::new(store.tokens).list(identity.as_deref())?;
            let now = Timestamp::now();
            if !json {
                println!(
                    "{:<38} {:<20} {:<28} {:<28} {:<9} LABEL",
                    "ID", "IDENTITY", "CREATED", "EXPIRES", "STATE"
                );
            }
            for t in tokens {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": t.id, "identity": t.identity, "created_at": t.created_at,
                            "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                            "state": state, "label": t.label,
                        })
                    );
                } else {
                    println!(
                        "{:<38} {:<20} {:<28} {:<28} {:<9} {}",
                        t.id,
                        t.identity,
                        t.created_at.to_string(),
                        t.expires_at
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "never".into()),
                        state,
                        t.label.unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { id, store } => {
            let (config, store) = open(&store)?;
            let service = TokenService::new(store.tokens.clone());
            let record = service
                .list(None)?
                .into_iter()
                .find(|t| t.id == id)
                .with_context(|| format!("no token with id {id:?} (see `vigil token list`)"))?;
            let writer = super::audit::cli_writer(config.as_ref(), store.audit)?;
            vigil_audit::wait_durable(writer.append(EventDraft::new(Event::TokenRevoked(
                TokenRevoked {
                    token_id: id.clone(),
                    identity_name: record.identity.clone(),
                    revoked_by: operator(),
                },
            ))))
            .context(
                "cannot record the revocation in the audit trail, so the token was not revoked",
            )?;
            service.revoke(&id)?;
            writer.shutdown()?;
            eprintln!("token {id} of identity {} revoked", record.identity);
            Ok(())
        }
    }
}
