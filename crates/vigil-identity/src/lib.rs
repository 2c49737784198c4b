//! # vigil-identity
//!
//! Who is connecting. Clients give `user` = the identity's name and `password` = a token, which
//! is either a **Vigil service token** (`vgt_…`, issued by `vigil token create`) or an **OIDC
//! access token** (a JWT from any OpenID Provider Vigil is configured to trust). The
//! [`Authenticator`] turns the pair into a [`Principal`](vigil_core::Principal), or into an
//! [`AuthRejection`] whose reason is one of
//! [`AuthFailureReason`](vigil_core::event::AuthFailureReason) and whose detail and
//! [`client_message`](AuthRejection::client_message) say what went wrong and what to do.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn vigil_store::TokenStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_identity::{Authenticator, IdentityConfig, OidcProviderConfig};
//! let auth = Authenticator::new(
//!     store,
//!     vec![IdentityConfig::machine("etl")],
//!     vec![OidcProviderConfig::new("corp", "https://idp.example.com", "vigil")],
//! )?;
//! auth.warm_up().await; // fetch the providers' keys now rather than at the first login
//! match auth.authenticate("etl", "vgt_…").await {
//!     Ok(principal) => println!("hello {}", principal.name),
//!     Err(rejection) => eprintln!("{}", rejection.client_message()),
//! }
//! # Ok(()) }
//! ```
//!
//! ## What this crate owns
//! - [`tokens`]: generating service tokens (32 bytes from the OS CSPRNG), storing only their
//!   SHA-256 through the [`TokenStore`](vigil_store::TokenStore), listing, revoking and checking them;
//!   parsing `--expires 30d`.
//! - [`oidc`]: provider configuration, discovery, the JWKS cache (refresh on unknown `kid`,
//!   rate-limited), and JWT validation with [`jsonwebtoken`] (asymmetric algorithms only, the
//!   algorithm bound to the key's type, `iss`/`aud`/`exp`/`nbf` checked).
//! - [`Authenticator`]: routing a secret to the right path, and checking that the token's
//!   identity is the `user` given and is declared.
//!
//! ## What it must not do
//! - **Never log, store or echo a token.** Log lines and rejections carry reasons, token ids,
//!   and a JWT's `iss`/`sub` (sanitised) at most; the store keeps hashes only.
//! - No audit writes: the caller records `AuthFailed`, `TokenIssued`, `TokenRevoked`
//!   ([`AuthRejection::to_auth_failed`] builds the first).
//! - No authorisation: which connections an identity may use is the gateway's check
//!   ([`IdentityConfig::may_use`]); policies come later.
//! - No blocking on the async path: store calls run on `spawn_blocking`.
//!
//! ## Tests
//! `cargo test -p vigil-identity` runs everything, including the tests against a **real
//! OpenID Provider** ([`oidc-provider`](https://www.npmjs.com/package/oidc-provider) on
//! Node.js, from `testsupport/oidc-provider/`). Those need `node` (>= 20.19) and `npm` on PATH;
//! the first run does `npm ci` there (the npm registry must be reachable once). Without `node`
//! they print `SKIPPED …: node was not found` and pass, unless `VIGIL_TEST_REQUIRE_NODE=1` is
//! set (as CI should), which makes them fail instead. Other crates reuse the harness through
//! the `testkit` feature (see `testkit::OidcTestProvider`):
//!
//! ```toml
//! [dev-dependencies]
//! vigil-identity = { workspace = true, features = ["testkit"] }
//! ```

mod authenticator;
mod config;
pub mod oidc;
mod rejection;
pub mod tokens;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use authenticator::Authenticator;
pub use config::{ConfigError, IdentityConfig};
pub use oidc::{OidcProviderConfig, OidcVerifier, ProviderStatus, VerifiedToken};
pub use rejection::{reason_name, AuthRejection};
pub use tokens::{parse_expiry, ParseExpiryError, TokenError, TokenService};
