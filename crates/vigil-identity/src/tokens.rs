//! Vigil service tokens: `vgt_` followed by 32 random bytes in base64url (43 characters).
//!
//! A token is shown once, when it is created, and never stored: the store keeps only its
//! SHA-256. A fast hash is the right tool here, unlike for passwords. Slow, salted hashes
//! (argon2, bcrypt) exist to make guessing *low-entropy* secrets expensive; a service token is
//! 256 bits from the operating system's CSPRNG, so no amount of guessing finds one, fast hash or
//! not. A plain, unsalted SHA-256 also lets the store find a token by an indexed lookup of its
//! hash (a salt would force trying every row), and keeps a login at microseconds of CPU, so that
//! a flood of bad tokens cannot exhaust the gateway.
//!
//! Issuing and revoking are audited by the caller (the CLI or the API records `TokenIssued` /
//! `TokenRevoked`), not here.
//!
//! ```
//! let (token, hash) = vigil_identity::tokens::generate();
//! assert!(token.starts_with("vgt_") && token.len() == 47);
//! assert_eq!(vigil_identity::tokens::hash(&token), hash);
//! ```

use crate::rejection::AuthRejection;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::AuthFailureReason;
use vigil_core::Timestamp;
use vigil_store::{StoreError, TokenRecord, TokenStore};

/// What every Vigil service token starts with (so that scanners and people can tell it apart).
pub const TOKEN_PREFIX: &str = "vgt_";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;
/// Length of the base64url (unpadded) encoding of [`TOKEN_BYTES`].
const ENCODED_LEN: usize = 43;
/// Longest label kept with a token.
const MAX_LABEL_CHARS: usize = 200;

/// A new token: the plaintext (show it once, then forget it) and its SHA-256 (store this).
pub fn generate() -> (String, [u8; 32]) {
    let mut bytes = [0u8; TOKEN_BYTES];
    // The OS CSPRNG directly: no user-space generator state to seed or fork-share.
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&token);
    (token, hash)
}

/// SHA-256 of a presented token, as stored.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `s` has the exact shape of a Vigil service token (prefix, length, alphabet). Cheap;
/// says nothing about whether the token exists.
pub fn is_well_formed(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == ENCODED_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Errors of token management (not of authentication, which yields an [`AuthRejection`]).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no service token with id {0:?}; list tokens with `vigil token list`")]
    NotFound(String),
    #[error("the identity name must not be empty nor hold control characters")]
    BadIdentity,
    #[error("the label must be at most {MAX_LABEL_CHARS} characters without control characters")]
    BadLabel,
    #[error("the expiry is too far in the future; give a shorter duration or `never`")]
    ExpiryTooFar,
}

/// Issues, lists, revokes and checks service tokens, over a [`TokenStore`].
///
/// Calls are blocking (the store is); from async code run them with `spawn_blocking`.
#[derive(Clone)]
pub struct TokenService {
    store: Arc<dyn TokenStore>,
}

impl TokenService {
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        TokenService { store }
    }

    /// Issues a token for `identity`, valid for `expires` (`None` = until revoked): makes it
    /// and stores it. Returns the plaintext, to show once, and the stored record. The identity
    /// is not checked against the configuration here: the caller does that.
    pub fn create(
        &self,
        identity: &str,
        expires: Option<Duration>,
        label: Option<&str>,
    ) -> Result<(String, TokenRecord), TokenError> {
        let (plaintext, record) = self.prepare(identity, expires, label)?;
        self.insert(&record)?;
        Ok((plaintext, record))
    }

    /// Makes a token and its record *without* storing it, for callers that record the issuance
    /// in the audit trail first and then [`insert`](Self::insert) it, so that no token can
    /// exist that the trail does not show.
    pub fn prepare(
        &self,
        identity: &str,
        expires: Option<Duration>,
        label: Option<&str>,
    ) -> Result<(String, TokenRecord), TokenError> {
        if identity.is_empty() || identity.chars().any(char::is_control) {
            return Err(TokenError::BadIdentity);
        }
        if let Some(l) = label {
            if l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control) {
                return Err(TokenError::BadLabel);
            }
        }
        let created_at = Timestamp::now();
        let expires_at = match expires {
            None => None,
            Some(d) => {
                let us = i64::try_from(d.as_micros()).map_err(|_| TokenError::ExpiryTooFar)?;
                let at = created_at
                    .as_micros()
                    .checked_add(us)
                    .ok_or(TokenError::ExpiryTooFar)?;
                Some(Timestamp::from_micros(at))
            }
        };
        let (plaintext, hash) = generate();
        let record = TokenRecord {
            // UUIDv7: unique, not secret, and sorts by creation time in listings.
            id: uuid::Uuid::now_v7().to_string(),
            identity: identity.to_string(),
            hash,
            created_at,
            expires_at,
            revoked_at: None,
            label: label.map(str::to_string),
        };
        Ok((plaintext, record))
    }

    /// Stores a record made by [`prepare`](Self::prepare); from then on its token works.
    pub fn insert(&self, record: &TokenRecord) -> Result<(), TokenError> {
        Ok(self.store.insert_token(record)?)
    }

    /// Tokens (never their plaintext, which is not kept), oldest first, optionally of one
    /// identity.
    pub fn list(&self, identity: Option<&str>) -> Result<Vec<TokenRecord>, TokenError> {
        Ok(self.store.list_tokens(identity)?)
    }

    /// Revokes a token by id and returns its record. Revoking a revoked token is not an error;
    /// its `revoked_at` stays the first revocation time.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        self.store
            .revoke_token(id, Timestamp::now())?
            .ok_or_else(|| TokenError::NotFound(id.to_string()))
    }

    /// Checks a presented token: it must be well formed, known, not revoked and not expired.
    pub fn check(&self, presented: &str) -> Result<TokenRecord, AuthRejection> {
        if !is_well_formed(presented) {
            return Err(AuthRejection::new(
                AuthFailureReason::UnknownToken,
                "not a well-formed Vigil service token",
            ));
        }
        self.check_hash(&hash(presented))
    }

    /// [`check`](Self::check) for a token already hashed (so that only the hash crosses into a
    /// blocking task).
    pub fn check_hash(&self, hash: &[u8; 32]) -> Result<TokenRecord, AuthRejection> {
        let record = match self.store.find_token_by_hash(hash) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(AuthRejection::new(
                    AuthFailureReason::UnknownToken,
                    "no such service token",
                ))
            }
            Err(e) => {
                // The store's message names no token (it only ever saw the hash).
                tracing::error!(error = %e, "service token lookup failed");
                return Err(AuthRejection::new(
                    AuthFailureReason::ProviderUnavailable,
                    "the token store could not be read",
                ));
            }
        };
        // Defence in depth against a store that returns the wrong row. Constant time, though
        // the index lookup before it is not: timing there reveals at most something about the
        // hash of a guess, which does not help find a token.
        if !constant_time_eq(&record.hash, hash) {
            return Err(AuthRejection::new(
                AuthFailureReason::UnknownToken,
                "no such service token",
            ));
        }
        if let Some(at) = record.revoked_at {
            return Err(AuthRejection::new(
                AuthFailureReason::TokenRevoked,
                format!("service token {} was revoked at {at}", record.id),
            ));
        }
        if let Some(at) = record.expires_at {
            if at <= Timestamp::now() {
                return Err(AuthRejection::new(
                    AuthFailureReason::TokenExpired,
                    format!("service token {} expired at {at}", record.id),
                ));
            }
        }
        Ok(record)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a `--expires` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseExpiryError {
    #[error(
        "invalid duration {input:?}: {reason}; use e.g. `30d`, `12h`, `15m`, `1h 30m` or `never`"
    )]
    Invalid { input: String, reason: String },
    #[error("the duration must be longer than zero; use e.g. `30d`, or `never`")]
    Zero,
}

/// Parses a token lifetime as given to `--expires`: `30d`, `12h`, `15m`, combinations such as
/// `1d 12h`, anything else [`humantime`] reads (`2weeks`, `90s`), or `never` (→ `None`).
///
/// ```
/// use std::time::Duration;
/// use vigil_identity::tokens::parse_expiry;
/// assert_eq!(parse_expiry("30d").unwrap(), Some(Duration::from_secs(30 * 86_400)));
/// assert_eq!(parse_expiry("never").unwrap(), None);
/// assert!(parse_expiry("30").is_err());
/// ```
pub fn parse_expiry(s: &str) -> Result<Option<Duration>, ParseExpiryError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let d = humantime::parse_duration(s).map_err(|e| ParseExpiryError::Invalid {
        input: s.to_string(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(ParseExpiryError::Zero);
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let (a, ha) = generate();
        let (b, hb) = generate();
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash(&a), ha);
        // 32 bytes round-trip through the encoding.
        let raw = URL_SAFE_NO_PAD.decode(&a[TOKEN_PREFIX.len()..]).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn well_formedness_checks_prefix_length_and_alphabet() {
        let (t, _) = generate();
        assert!(!is_well_formed(&t[1..]));
        assert!(!is_well_formed(&format!("{t}A")));
        assert!(!is_well_formed(&format!("{}+", &t[..t.len() - 1])));
        assert!(!is_well_formed("vgt_"));
        assert!(!is_well_formed(""));
    }

    #[test]
    fn expiry_parser() {
        let day = 86_400;
        assert_eq!(parse_expiry("30d"), Ok(Some(Duration::from_secs(30 * day))));
        assert_eq!(
            parse_expiry("12h"),
            Ok(Some(Duration::from_secs(12 * 3600)))
        );
        assert_eq!(parse_expiry("15m"), Ok(Some(Duration::from_secs(15 * 60))));
        assert_eq!(
            parse_expiry(" 1d 12h "),
            Ok(Some(Duration::from_secs(day + 12 * 3600)))
        );
        assert_eq!(parse_expiry("never"), Ok(None));
        assert_eq!(parse_expiry("NEVER"), Ok(None));
        assert_eq!(parse_expiry("0d"), Err(ParseExpiryError::Zero));
        for bad in ["", "30", "d", "soon", "-1d"] {
            let err = parse_expiry(bad).unwrap_err();
            assert!(err.to_string().contains("never"), "{err}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
