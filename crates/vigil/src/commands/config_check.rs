//! `vigil config check`: parse and validate a config file without starting anything.

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: syntax, keys, references between sections, secret references.
    Check {
        #[arg(long, short = 'c', env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { config: path } => {
            let config = Config::load(&path)?;
            // Secrets must resolve too: a missing env var is a config error found now, not at
            // the first connection.
            crate::wiring::targets(&config)?;
            if let Some(api) = &config.api {
                api.admin_token.resolve()?;
                if let Some(token) = &api.auditor_token {
                    token.resolve()?;
                }
            }
            for l in &config.listeners {
                if let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) {
                    vigil_pg::load_server_tls(cert, key)?;
                }
            }
            vigil_identity::Authenticator::validate(&config.identities, &config.oidc_providers)?;
            // Masking compiles exactly as at startup (patterns, operators, the key).
            if let Some(m) = config.masking.as_ref().filter(|m| m.enabled) {
                crate::masking::compile(m).context("invalid [masking] configuration")?;
            }
            println!(
                "{}: ok ({} listeners, {} connections, {} identities, {} OIDC providers)",
                path.display(),
                config.listeners.len(),
                config.connections.len(),
                config.identities.len(),
                config.oidc_providers.len()
            );
            Ok(())
        }
    }
}
