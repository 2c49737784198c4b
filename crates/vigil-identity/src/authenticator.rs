//! From a `user` and a secret to a [`Principal`].

use crate::config::{ConfigError, IdentityConfig};
use crate::oidc::{looks_like_jwt, OidcProviderConfig, OidcVerifier, ProviderStatus};
use crate::rejection::{sanitize, AuthRejection};
use crate::tokens::{self, TokenService, TOKEN_PREFIX};
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::event::AuthFailureReason;
use vigil_core::{AuthMethod, Principal};
use vigil_store::TokenStore;

/// Authenticates clients: `user` is the identity's name, the secret a Vigil service token or an
/// OIDC access token (JWT).
///
/// The secret's shape picks the path: three base64url segments → OIDC; `vgt_…` → service
/// token; anything else is refused as [`UnknownToken`](AuthFailureReason::UnknownToken). The
/// identity the token resolves to must be the `user` given
/// ([`IdentityMismatch`](AuthFailureReason::IdentityMismatch) otherwise, without saying whose
/// token it is) and must be declared
/// ([`UnknownIdentity`](AuthFailureReason::UnknownIdentity)). Which connections the identity
/// may use is the gateway's to check ([`IdentityConfig::may_use`]).
pub struct Authenticator {
    tokens: TokenService,
    identities: HashMap<String, IdentityConfig>,
    oidc: OidcVerifier,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("identities", &self.identities.len())
            .field("oidc", &self.oidc)
            .finish()
    }
}

impl Authenticator {
    /// Checks the configuration (duplicate identities, providers' settings, `identity_map`
    /// entries naming undeclared identities) and builds the authenticator. Fetches nothing;
    /// call [`warm_up`](Self::warm_up) at startup to fetch the providers' keys early.
    pub fn new(
        store: Arc<dyn TokenStore>,
        identities: Vec<IdentityConfig>,
        providers: Vec<OidcProviderConfig>,
    ) -> Result<Self, ConfigError> {
        let by_name = check_identities(identities, &providers)?;
        Ok(Authenticator {
            tokens: TokenService::new(store),
            identities: by_name,
            oidc: OidcVerifier::new(providers)?,
        })
    }

    /// The checks of [`new`](Self::new), without a store (for `vigil config check`).
    pub fn validate(
        identities: &[IdentityConfig],
        providers: &[OidcProviderConfig],
    ) -> Result<(), ConfigError> {
        check_identities(identities.to_vec(), providers)?;
        OidcVerifier::new(providers.to_vec()).map(drop)
    }

    /// Fetches discovery and keys of every OIDC provider. Never fails: unreachable providers
    /// are logged (and reported) and retried on first use.
    pub async fn warm_up(&self) -> Vec<ProviderStatus> {
        self.oidc.warm_up().await
    }

    /// A declared identity, by name.
    pub fn identity(&self, name: &str) -> Option<&IdentityConfig> {
        self.identities.get(name)
    }

    /// The service-token manager over the same store.
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// The OIDC verifier.
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// Authenticates `user` with `secret`. Never logs nor returns the secret.
    pub async fn authenticate(
        &self,
        user: &str,
        secret: &str,
    ) -> Result<Arc<Principal>, AuthRejection> {
        if secret.is_empty() {
            return Err(AuthRejection::new(
                AuthFailureReason::MissingToken,
                "no token was given as the password",
            ));
        }
        if looks_like_jwt(secret) {
            self.authenticate_oidc(user, secret).await
        } else if secret.starts_with(TOKEN_PREFIX) {
            self.authenticate_service_token(user, secret).await
        } else {
            Err(AuthRejection::new(
                AuthFailureReason::UnknownToken,
                "the password is neither a Vigil service token (vgt_…) nor a JWT",
            ))
        }
    }

    /// Authenticates a bearer credential alone (the HTTP API): whose it is, the token says.
    /// The same paths and checks as [`authenticate`](Self::authenticate), the `user` being the
    /// identity the token resolves to. Never logs nor returns the secret.
    pub async fn authenticate_bearer(&self, secret: &str) -> Result<Arc<Principal>, AuthRejection> {
        if looks_like_jwt(secret) {
            let v = self.oidc.verify(secret).await?;
            let user = v.identity.clone();
            self.oidc_principal(&user, v)
        } else {
            let record = self.service_token(secret).await?;
            let user = record.identity.clone();
            self.token_principal(&user, record)
        }
    }

    async fn authenticate_oidc(
        &self,
        user: &str,
        token: &str,
    ) -> Result<Arc<Principal>, AuthRejection> {
        let v = self.oidc.verify(token).await?;
        self.oidc_principal(user, v)
    }

    /// `user`'s principal from a validated OIDC token.
    fn oidc_principal(
        &self,
        user: &str,
        v: crate::oidc::VerifiedToken,
    ) -> Result<Arc<Principal>, AuthRejection> {
        let ctx = |r: AuthRejection| r.with_token_context(Some(&v.issuer), v.subject.as_deref());
        let identity = self.resolve(user, &v.identity).map_err(ctx)?;
        if identity.kind != v.kind {
            return Err(ctx(AuthRejection::new(
                AuthFailureReason::IdentityMismatch,
                format!(
                    "identity {:?} is declared {} but provider {} vouches for {} identities",
                    sanitize(user),
                    identity.kind,
                    v.provider,
                    v.kind
                ),
            )));
        }
        Ok(Arc::new(Principal {
            name: identity.name.clone(),
            kind: identity.kind,
            auth_method: AuthMethod::Oidc,
            issuer: Some(v.issuer),
            subject: v.subject,
            credential_id: None,
        }))
    }

    async fn authenticate_service_token(
        &self,
        user: &str,
        token: &str,
    ) -> Result<Arc<Principal>, AuthRejection> {
        if !tokens::is_well_formed(token) {
            return Err(AuthRejection::new(
                AuthFailureReason::UnknownToken,
                "not a well-formed Vigil service token",
            ));
        }
        let record = self.service_token(token).await?;
        self.token_principal(user, record)
    }

    /// The live service token `token` is, looked up by its hash.
    async fn service_token(&self, token: &str) -> Result<vigil_store::TokenRecord, AuthRejection> {
        // Only the hash crosses into the blocking task (the store's calls block).
        let hash = tokens::hash(token);
        let service = self.tokens.clone();
        tokio::task::spawn_blocking(move || service.check_hash(&hash))
            .await
            .map_err(|_| {
                AuthRejection::new(
                    AuthFailureReason::ProviderUnavailable,
                    "the service token check did not complete",
                )
            })?
    }

    /// `user`'s principal from a live service token.
    fn token_principal(
        &self,
        user: &str,
        record: vigil_store::TokenRecord,
    ) -> Result<Arc<Principal>, AuthRejection> {
        let identity = self.resolve(user, &record.identity)?;
        Ok(Arc::new(Principal {
            name: identity.name.clone(),
            kind: identity.kind,
            auth_method: AuthMethod::ServiceToken,
            issuer: None,
            subject: None,
            credential_id: Some(record.id),
        }))
    }

    /// The declared identity `user`, if the token (which resolved to `token_identity`) is
    /// `user`'s. The mismatch message does not say whose the token is.
    fn resolve(&self, user: &str, token_identity: &str) -> Result<&IdentityConfig, AuthRejection> {
        if token_identity != user {
            return Err(AuthRejection::new(
                AuthFailureReason::IdentityMismatch,
                format!("the token does not belong to identity {:?}", sanitize(user)),
            ));
        }
        self.identities.get(user).ok_or_else(|| {
            AuthRejection::new(
                AuthFailureReason::UnknownIdentity,
                format!(
                    "identity {:?} is not declared in Vigil's configuration",
                    sanitize(user)
                ),
            )
        })
    }
}

/// Indexes the identities by name, refusing duplicates and `identity_map` entries that name
/// an undeclared identity (certainly a typo).
fn check_identities(
    identities: Vec<IdentityConfig>,
    providers: &[OidcProviderConfig],
) -> Result<HashMap<String, IdentityConfig>, ConfigError> {
    let mut by_name = HashMap::new();
    for identity in identities {
        if identity.name.is_empty() {
            return Err(ConfigError::EmptyIdentityName);
        }
        if by_name.contains_key(&identity.name) {
            return Err(ConfigError::DuplicateIdentity(identity.name));
        }
        by_name.insert(identity.name.clone(), identity);
    }
    for p in providers {
        for (claim_value, identity) in p.identity_map.iter().flatten() {
            if !by_name.contains_key(identity) {
                return Err(ConfigError::UnmappedIdentity {
                    provider: p.name.clone(),
                    claim_value: claim_value.clone(),
                    identity: identity.clone(),
                });
            }
        }
    }
    Ok(by_name)
}
