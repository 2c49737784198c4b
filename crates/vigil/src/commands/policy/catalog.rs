//! The catalog decisions are made against: read once through the connection's own upstream
//! login, from another database, or none at all.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::time::Duration;
use vigil_pg::DatabaseCatalog;
use vigil_policy::{AssumeBuiltins, FunctionCatalog};
use vigil_sql::{Catalog, StaticCatalog};

/// Where `--catalog-from` says the catalog comes from.
pub(super) enum CatalogChoice {
    Upstream,
    Url(String),
    None,
}

impl CatalogChoice {
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "upstream" => CatalogChoice::Upstream,
            "none" => CatalogChoice::None,
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                CatalogChoice::Url(url.to_string())
            }
            // Not echoed: a mistyped URL may hold a password.
            _ => bail!("--catalog-from: give upstream, none, or a postgres:// URL"),
        })
    }
}

/// A catalog read once, or none (then names cannot be resolved).
pub(super) struct LoadedCatalog {
    pub(super) database: Option<DatabaseCatalog>,
    pub(super) empty: StaticCatalog,
    /// Where it came from, for the report.
    pub(super) source: String,
}

impl LoadedCatalog {
    pub(super) fn relations(&self) -> &dyn Catalog {
        match &self.database {
            Some(d) => &*d.relations,
            None => &self.empty,
        }
    }

    pub(super) fn functions(&self) -> Box<dyn FunctionCatalog + '_> {
        match &self.database {
            Some(d) => Box::new(d.functions()),
            None => Box::new(AssumeBuiltins),
        }
    }

    pub(super) fn offline(&self) -> bool {
        self.database.is_none()
    }

    pub(super) fn load(
        choice: &CatalogChoice,
        config: &Config,
        connection: &str,
    ) -> Result<LoadedCatalog> {
        let empty = StaticCatalog::new([], vec!["pg_catalog".into(), "public".into()]);
        let (target, source) = match choice {
            CatalogChoice::None => {
                return Ok(LoadedCatalog {
                    database: None,
                    empty,
                    source: "none (names are not resolved)".into(),
                })
            }
            CatalogChoice::Upstream => {
                let c = config
                    .connections
                    .iter()
                    .find(|c| c.name == connection)
                    .with_context(|| format!("connection {connection:?} is not declared"))?;
                (
                    crate::wiring::target(c)?,
                    format!(
                        "the database of connection {connection:?} ({}:{}/{})",
                        c.host, c.port, c.database
                    ),
                )
            }
            CatalogChoice::Url(url) => (
                target_from_url(url, connection)?,
                "the database at --catalog-from".into(),
            ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let database = runtime
            .block_on(DatabaseCatalog::read(&target, Duration::from_secs(15)))
            .with_context(|| {
                format!("cannot read the catalog from {source} (use --catalog-from URL or none)")
            })?;
        Ok(LoadedCatalog {
            database: Some(database),
            empty,
            source,
        })
    }

    pub(super) fn relation_count(&self) -> usize {
        self.database
            .as_ref()
            .map(|d| d.relations.relations().count())
            .unwrap_or(0)
    }
}

/// A target from a `postgres://` URL (password in the URL or `PGPASSWORD`).
fn target_from_url(url: &str, connection: &str) -> Result<vigil_pg::Target> {
    let parsed: tokio_postgres::Config = url
        .parse()
        .context("--catalog-from: not a PostgreSQL URL")?;
    let host = match parsed.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let password = parsed
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .or_else(|| std::env::var("PGPASSWORD").ok())
        .map(vigil_core::SecretString::new);
    let tls = match parsed.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => vigil_pg::UpstreamTlsMode::Disable,
        tokio_postgres::config::SslMode::Require => vigil_pg::UpstreamTlsMode::Require,
        _ => vigil_pg::UpstreamTlsMode::Prefer,
    };
    Ok(vigil_pg::Target {
        name: connection.into(),
        host,
        port: parsed.get_ports().first().copied().unwrap_or(5432),
        database: parsed
            .get_dbname()
            .context("--catalog-from: the URL names no database")?
            .to_string(),
        user: parsed
            .get_user()
            .context("--catalog-from: the URL names no user")?
            .to_string(),
        password,
        tls,
        ca_file: None,
        max_sessions: None,
        max_sessions_per_identity: None,
    })
}

// ---------------------------------------------------------------------------------------------
