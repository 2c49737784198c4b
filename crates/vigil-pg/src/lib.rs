//! # vigil-pg
//!
//! Vigil's PostgreSQL adapter. It owns the wire format and nothing else:
//!
//! - [`codec`] and [`messages`]: framing of protocol v3 and typed views of each message;
//! - the client handshake (SSLRequest/TLS, GSSENCRequest refused, StartupMessage, cleartext
//!   password exchange that carries the identity's token, CancelRequest);
//! - the upstream login with the vaulted credentials (SCRAM-SHA-256, md5, trust; TLS when
//!   configured), so the client never sees them;
//! - the proxy loop: every statement (simple Query, Execute, FunctionCall) is analysed, its
//!   `StatementStarted` record made durable, and only then forwarded; results stream back to
//!   the client unbuffered while rows, bytes, status and a digest are counted for its
//!   `StatementFinished` record.
//!
//! What a statement *means* (identity, analysis, audit) is decided through the traits below,
//! which the binary wires to `vigil-identity`, `vigil-sql` and `vigil-audit`. This crate never
//! writes to a store itself and never logs statement text, parameters or tokens.
//!
//! ```no_run
//! # async fn run(gateway: std::sync::Arc<vigil_pg::Gateway>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6432").await?;
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! vigil_pg::serve(listener, gateway, stopped).await;
//! # Ok(()) }
//! ```

pub mod codec;
pub mod messages;

mod cancel;
pub mod catalog;
mod config;
mod encoding;
mod grants;
pub mod masking;
mod protocol_path;
mod proxy;
mod server;
pub mod sqlstate;
pub mod startup_settings;
mod stream;
mod tls;
mod upstream;

pub use cancel::CancelRegistry;
pub use catalog::DatabaseCatalog;
pub use config::{Limits, ListenerSettings, ListenerTlsMode, Target, UpstreamTlsMode};
pub use grants::{
    AccessAsk, ApprovalGate, Elevation, ElevationAsk, GrantProvider, Pending, PendingAccess,
    ReviewAsk, Revocations, StatementReview,
};
pub use proxy::fuzz_session_names;
pub use server::{serve, Gateway, GatewayParts};
pub use tls::{load_server_tls, TlsError};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use vigil_core::event::AuthFailureReason;
use vigil_core::Principal;

/// A refused login, as the gateway records it and tells the client.
#[derive(Clone, Debug)]
pub struct AuthRejection {
    pub reason: AuthFailureReason,
    /// For the audit record and logs; free of secrets.
    pub detail: String,
    /// For the client: what went wrong and what to do.
    pub client_message: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks the token a client presents as its password.
pub trait ClientAuthenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Principal>, AuthRejection>>;
}

/// Decides whether an authenticated identity may open a session on a connection.
pub trait ConnectionAuthorizer: Send + Sync + 'static {
    /// `Err` carries a message for the client saying why not.
    fn may_connect(&self, principal: &Principal, connection: &str) -> Result<(), String>;
}
