//! Settings of the PostgreSQL listener and of upstream targets. The binary reads them from the
//! config file (docs/CONFIG.md documents every key).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::SecretString;

/// Whether clients must use TLS on a listener.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenerTlsMode {
    /// `required` on non-loopback addresses, `optional` on loopback.
    #[default]
    Auto,
    /// Clients must negotiate TLS (a certificate must be configured).
    Required,
    /// TLS offered when a certificate is configured; plaintext accepted.
    Optional,
    /// Never offer TLS. On a non-loopback address this must be chosen explicitly.
    Disabled,
}

/// Bounds on what an unauthenticated or authenticated client controls.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Time a client has to finish the handshake and present its token.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Largest message body a client may send (bytes). Bigger ones end the session with 08P01.
    pub max_message_bytes: usize,
    /// Largest token (password message) accepted, in bytes.
    pub max_token_bytes: usize,
    /// Prepared statements a session may hold at once.
    pub max_prepared_statements: usize,
    /// Open portals a session may hold at once.
    pub max_portals: usize,
    /// Time allowed to connect and log in to the upstream server.
    #[serde(with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// Memory for the analyses of statement texts shared by all sessions (MiB): the gateway's
    /// main cache, bounded by this estimate of what its entries hold.
    pub analysis_cache_mib: usize,
    /// Threads for blocking work (store reads and writes, token checks, capture files, API
    /// exports), on top of the async workers. Each thread that ever ran keeps memory (its stack
    /// and allocator caches), so the pool is bounded; work beyond it waits its turn.
    pub blocking_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            auth_timeout: Duration::from_secs(15),
            max_message_bytes: 64 << 20,
            max_token_bytes: 16 << 10,
            max_prepared_statements: 10_000,
            max_portals: 10_000,
            upstream_connect_timeout: Duration::from_secs(10),
            analysis_cache_mib: 64,
            blocking_threads: 32,
        }
    }
}

/// A PostgreSQL listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: ListenerTlsMode,
    /// PEM certificate chain for client TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for client TLS.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl ListenerSettings {
    /// The mode in force once `auto` is resolved against the address.
    pub fn effective_tls(&self) -> ListenerTlsMode {
        match self.tls {
            ListenerTlsMode::Auto if self.address.ip().is_loopback() => ListenerTlsMode::Optional,
            ListenerTlsMode::Auto => ListenerTlsMode::Required,
            other => other,
        }
    }
}

/// How Vigil secures its connection to the upstream server (libpq's `sslmode` values).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Disable,
    /// TLS if the server offers it, without certificate checks.
    #[default]
    Prefer,
    /// TLS, without certificate checks.
    Require,
    /// TLS, certificate chain checked against the CA, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

/// An upstream PostgreSQL server, with its credentials resolved from the vault references.
#[derive(Clone, Debug)]
pub struct Target {
    /// The connection's name: what clients give as `dbname`.
    pub name: Arc<str>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<SecretString>,
    pub tls: UpstreamTlsMode,
    /// PEM CA bundle for `verify-ca`/`verify-full` (system roots if absent).
    pub ca_file: Option<PathBuf>,
    /// Most sessions open at once through this connection, all identities together.
    pub max_sessions: Option<u32>,
    /// Most sessions one identity may hold at once on this connection (a grant's
    /// `max_sessions` may lower it).
    pub max_sessions_per_identity: Option<u32>,
}

impl Target {
    /// `host:port/database`, as recorded.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}
