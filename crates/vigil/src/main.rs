//! `vigil`: the gateway binary. It reads the config, wires the crates together and offers the
//! operator's commands. The crates know nothing of the CLI.

mod approval_store;
mod approvals;
mod commands;
mod config;
mod demo;
mod grants;
mod masking;
mod serve;
mod wiring;

use anyhow::Result;

// jemalloc returns freed memory to the system (glibc's malloc kept RSS at its high-water mark
// after large results and catalogs, arena by arena: docs/CONFIG.md, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "An audited, policy-enforcing gateway between machine identities and databases holding PHI",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a command finds the store: the config file, or the store URL directly.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Config file (its data_dir and [store] locate the store).
    #[arg(long, short = 'c', env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store URL (sqlite://PATH); overrides the config's.
    #[arg(long, env = "VIGIL_STORE")]
    pub store: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (and its HTTP API) as the config file describes.
    Serve {
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
    },
    /// Start a throwaway PostgreSQL with a synthetic EHR schema, and Vigil in front of it.
    Demo(demo::DemoArgs),
    /// Issue, list and revoke Vigil service tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Verify the tamper-evident audit trail; print the key that verifies it; apply retention;
    /// list refused logins.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Read recorded sessions.
    #[command(subcommand)]
    Sessions(commands::sessions::SessionsCommand),
    /// Play a recorded session: each statement and what the client saw (after masking).
    Replay(commands::replay::ReplayArgs),
    /// Export an evidence artifact: approvals, sessions, statements, masking, grants, denials,
    /// auth_failures.
    Export(commands::export::ExportArgs),
    /// Signed evidence bundles of a period, and their offline verification.
    #[command(subcommand)]
    Evidence(commands::evidence::EvidenceCommand),
    /// Just-in-time access requests: ask, list, show, approve, deny, revoke (through the API).
    #[command(subcommand)]
    Request(commands::request::RequestCommand),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(commands::config_check::ConfigCommand),
    /// Test, check and replay least-privilege policies without running anything.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// List and revoke the grants sessions run under.
    #[command(subcommand)]
    Grant(commands::grant::GrantCommand),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<i32> = match cli.command {
        Command::Serve { config } => serve::run_from_file(&config).map(|()| 0),
        Command::Demo(args) => demo::run(args).map(|()| 0),
        Command::Token(cmd) => commands::token::run(cmd).map(|()| 0),
        Command::Audit(cmd) => commands::audit::run(cmd),
        Command::Sessions(cmd) => commands::sessions::run(cmd).map(|()| 0),
        Command::Evidence(cmd) => commands::evidence::run(cmd),
        Command::Export(args) => commands::export::run(args).map(|()| 0),
        Command::Config(cmd) => commands::config_check::run(cmd).map(|()| 0),
        Command::Replay(args) => commands::replay::run(args),
        Command::Policy(cmd) => commands::policy::run(cmd),
        Command::Grant(cmd) => commands::grant::run(cmd).map(|()| 0),
        Command::Request(cmd) => commands::request::run(cmd).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
