//! Adapters that give the gateway (vigil-pg) what it asks for, from the other crates.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use vigil_core::Principal;
use vigil_identity::{Authenticator, IdentityConfig};
use vigil_pg::{AuthRejection, BoxFuture, ClientAuthenticator, ConnectionAuthorizer, Target};
use vigil_store::Stores;

/// Tokens and OIDC, from vigil-identity.
pub struct IdentityAuth(pub Arc<Authenticator>);

impl ClientAuthenticator for IdentityAuth {
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Principal>, AuthRejection>> {
        Box::pin(async move {
            self.0
                .authenticate(user, secret)
                .await
                .map_err(|r| AuthRejection {
                    client_message: r.client_message(),
                    reason: r.reason,
                    detail: r.detail,
                    issuer: r.issuer,
                    subject: r.subject,
                })
        })
    }
}

/// Which identity may use which connection, from `[[identities]] connections`.
pub struct ConfiguredAccess {
    identities: HashMap<String, IdentityConfig>,
}

impl ConfiguredAccess {
    pub fn new(identities: &[IdentityConfig]) -> Self {
        ConfiguredAccess {
            identities: identities
                .iter()
                .map(|i| (i.name.clone(), i.clone()))
                .collect(),
        }
    }
}

impl ConnectionAuthorizer for ConfiguredAccess {
    fn may_connect(&self, principal: &Principal, connection: &str) -> Result<(), String> {
        match self.identities.get(&principal.name) {
            Some(identity) if identity.may_use(connection) => Ok(()),
            _ => Err(format!(
                "identity \"{}\" may not use connection \"{connection}\"",
                principal.name
            )),
        }
    }
}

/// Upstream targets with their credentials read from the vault references.
pub fn targets(config: &Config) -> Result<Vec<Target>> {
    config.connections.iter().map(target).collect()
}

/// One connection's upstream target, its credentials read from the vault reference.
pub fn target(c: &crate::config::ConnectionConfig) -> Result<Target> {
    // Only PostgreSQL targets exist so far; the match makes a new protocol a compile error
    // here rather than a silent misroute.
    match c.protocol {
        crate::config::Protocol::Postgres => {}
    }
    let password = match &c.password {
        Some(r) => Some(
            r.resolve()
                .with_context(|| format!("connection {:?}: password", c.name))?,
        ),
        None => None,
    };
    Ok(Target {
        name: c.name.as_str().into(),
        host: c.host.clone(),
        port: c.port,
        database: c.database.clone(),
        user: c.user.clone(),
        password,
        tls: c.tls,
        ca_file: c.ca_file.clone(),
        max_sessions: c.max_sessions,
        max_sessions_per_identity: c.max_sessions_per_identity,
    })
}

/// Opens the store a command should use: `--store` if given, else the config's.
pub fn open_store(config: Option<&Config>, store_url: Option<&str>) -> Result<Stores> {
    let (url, options) = match (store_url, config) {
        (Some(url), c) => (url.to_string(), c.map(|c| c.store.sqlite.clone()).unwrap_or_default()),
        (None, Some(c)) => (c.store_url(), c.store.sqlite.clone()),
        (None, None) => bail!(
            "no store given: pass --config FILE (or set VIGIL_CONFIG), or --store sqlite://PATH (or set VIGIL_STORE)"
        ),
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
        }
    }
    let store =
        vigil_store::open(&url, options).with_context(|| format!("cannot open store {url}"))?;
    Ok(Stores::all_in(Arc::new(store)))
}

/// The data directory that goes with a store URL given without a config: the database file's
/// directory (where the signing key and anchor live by default).
pub fn data_dir_of(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    Path::new(path).parent().map(|p| {
        if p.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    })
}
