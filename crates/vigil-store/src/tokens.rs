//! Vigil service tokens, as their SHA-256.

use crate::error::StoreError;
use vigil_core::Timestamp;

/// A Vigil service token as stored: never the token, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub identity: String,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Free text given at creation (`--label`), for humans listing tokens.
    pub label: Option<String>,
}

/// Service tokens. Used by vigil-identity's `TokenService` (and through it the `Authenticator`
/// and `vigil token`).
pub trait TokenStore: Send + Sync + 'static {
    /// Keeps a new token; an id or hash already kept is an error.
    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn find_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    /// Tokens, oldest first, optionally of one identity.
    fn list_tokens(&self, identity: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;
    /// Marks a token revoked; returns it, or `None` if there is no token with that id.
    /// Revoking an already revoked token keeps the first revocation time.
    fn revoke_token(&self, id: &str, at: Timestamp) -> Result<Option<TokenRecord>, StoreError>;
}
