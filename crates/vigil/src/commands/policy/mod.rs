//! `vigil policy test|check|replay`: see what a policy allows before it goes live. Nothing
//! here runs a client's statement: `test` and `replay` analyse and decide exactly as the
//! gateway does (same analyser, same `decide`), against the database's catalog read once.
//!
//! | module | |
//! |---|---|
//! | `catalog` | where names are resolved: the connection's database, another one, or none |
//! | `decide` | the grants a session would hold, and the gateway's decision on one text |
//! | `test` | `vigil policy test` |
//! | `check` | `vigil policy check` |
//! | `replay` | `vigil policy replay` |

mod catalog;
mod check;
mod decide;
mod replay;
mod test;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use vigil_core::Timestamp;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Decide one SQL text for an identity on a connection, without running it. Exits 0 if
    /// allowed, 1 if refused, 2 if it cannot be decided (or on error), 3 if it needs an
    /// approval first (an approval-required policy's scope, or a statement review).
    Test {
        /// The identity, as clients give it as `user`.
        #[arg(long)]
        identity: String,
        /// The connection, as clients give it as `dbname`.
        #[arg(long)]
        connection: String,
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Where the relations and columns come from: `upstream` (the connection's own
        /// database, logged in with its vaulted credentials, as a session would), a
        /// `postgres://user:password@host:port/db` URL (a copy with the same schema), or
        /// `none` (no catalog: names cannot be resolved, so most statements stay undecided).
        #[arg(long, default_value = "upstream")]
        catalog_from: String,
        /// Decide as at this time (RFC 3339), for time windows; default now.
        #[arg(long)]
        at: Option<String>,
        /// Print the decision and the analysis as JSON.
        #[arg(long)]
        json: bool,
        /// The SQL text, as the client would send it (several statements allowed).
        sql: String,
    },
    /// Validate the policies of a config file: syntax, unknown keys, references to
    /// identities, groups and connections, windows, patterns. Every problem is listed with
    /// its line and field. Exits 0 if valid (warnings allowed), 1 if not, 2 if unreadable.
    Check {
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Print the problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a draft config's policies against the statements recorded in the audit
    /// trail and list what would newly be refused or allowed. Exits 0 if nothing changes,
    /// 1 if something does, 2 on error.
    Replay {
        /// The draft config (its identities, groups, connections and policies are used).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Statements recorded at or after this time (RFC 3339).
        #[arg(long)]
        since: String,
        /// Statements recorded before this time (RFC 3339); default now.
        #[arg(long)]
        until: Option<String>,
        /// The store holding the audit trail (sqlite://PATH); default: the draft config's.
        #[arg(long, env = "VIGIL_STORE")]
        store: Option<String>,
        /// As for `policy test`; `upstream` reads each recorded connection's database.
        #[arg(long, default_value = "upstream")]
        catalog_from: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(cmd: PolicyCommand) -> Result<i32> {
    match cmd {
        PolicyCommand::Test {
            identity,
            connection,
            config,
            catalog_from,
            at,
            json,
            sql,
        } => test::run(
            &config,
            &identity,
            &connection,
            &catalog_from,
            at,
            json,
            &sql,
        ),
        PolicyCommand::Check { config, json } => check::run(&config, json),
        PolicyCommand::Replay {
            config,
            since,
            until,
            store,
            catalog_from,
            format,
        } => replay::run(&config, &since, until, store, &catalog_from, format),
    }
}

pub(super) fn time(name: &str, v: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(v)
        .with_context(|| format!("--{name} {v:?}: use RFC 3339, e.g. 2026-11-28T09:00:00Z"))
}
