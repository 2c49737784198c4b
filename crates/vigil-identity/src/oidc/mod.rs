//! OIDC access tokens: which providers Vigil trusts, and validating their JWTs.
//!
//! A token is routed to a provider by its `iss` (read unverified, for routing only), then
//! verified against that provider's published keys and checked, in this order:
//!
//! 1. header: `alg: none` → [`JwtAlgNone`]; an HMAC algorithm (HS256/384/512) or any algorithm
//!    outside the provider's `algorithms` → [`JwtAlgorithmNotAllowed`]. HMAC is refused
//!    outright: a verifier that accepted it could be fooled by an HMAC keyed with the
//!    provider's *public* key (the classic algorithm-confusion forgery);
//! 2. key: the JWKS key with the token's `kid` (fetched again once if unknown →
//!    [`JwtUnknownKey`]); its type must fit the algorithm (an RSA key verifies only RS*/PS*,
//!    a P-256 key only ES256…) and its own `alg`, if any, must equal the token's, else
//!    [`JwtAlgorithmNotAllowed`];
//! 3. signature → [`JwtBadSignature`];
//! 4. claims: `exp`, `iss`, `aud` required ([`JwtMalformed`] when absent); `exp` in the
//!    future and `nbf` (if present) in the past, both give or take `leeway` ([`JwtExpired`],
//!    [`JwtNotYetValid`]); `iss` exactly the configured issuer ([`JwtWrongIssuer`]); `aud` (a
//!    string or a list) containing the configured audience ([`JwtWrongAudience`]);
//! 5. identity: the `identity_claim` (default `sub`), mapped through `identity_map` when there
//!    is one ([`JwtNoIdentity`]).
//!
//! Header parameters that would have Vigil fetch or trust a key named by the token itself
//! (`jku`, `x5u`, `jwk`, `x5c`) are ignored: keys come only from the provider's `jwks_uri`.
//!
//! [`JwtAlgNone`]: AuthFailureReason::JwtAlgNone
//! [`JwtAlgorithmNotAllowed`]: AuthFailureReason::JwtAlgorithmNotAllowed
//! [`JwtUnknownKey`]: AuthFailureReason::JwtUnknownKey
//! [`JwtBadSignature`]: AuthFailureReason::JwtBadSignature
//! [`JwtMalformed`]: AuthFailureReason::JwtMalformed
//! [`JwtExpired`]: AuthFailureReason::JwtExpired
//! [`JwtNotYetValid`]: AuthFailureReason::JwtNotYetValid
//! [`JwtWrongIssuer`]: AuthFailureReason::JwtWrongIssuer
//! [`JwtWrongAudience`]: AuthFailureReason::JwtWrongAudience
//! [`JwtNoIdentity`]: AuthFailureReason::JwtNoIdentity

mod keys;
mod peek;

pub use peek::looks_like_jwt;

use crate::config::{deserialize_duration, ConfigError};
use crate::rejection::AuthRejection;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use keys::{KeySet, ProviderKeys, PublicKey, Refresh};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::AuthFailureReason;
use vigil_core::{IdentityKind, Timestamp};

/// An OIDC provider whose access tokens Vigil accepts (`[[oidc_providers]]`).
///
/// ```toml
/// [[oidc_providers]]
/// name = "corp-idp"                          # for logs and messages
/// issuer = "https://idp.example.com/realms/ops"  # exactly as in the tokens' `iss`
/// audience = "vigil"                         # must be in the tokens' `aud`
/// identity_claim = "client_id"               # default "sub"; `azp` also common for machines
/// kind = "machine"                           # machine (default) | human
/// algorithms = ["RS256", "ES256", "EdDSA"]   # the default
/// leeway = "30s"                             # clock skew allowed on exp/nbf (default 30s)
/// jwks_min_refresh_interval = "10s"          # default 10s
/// jwks_max_age = "1h"                        # default 1h
/// http_timeout = "10s"                       # default 10s
/// allow_insecure_http = false                # http:// only for loopback issuers (tests)
///
/// [oidc_providers.identity_map]              # optional: claim value → identity name
/// "0oa1b2c3d4" = "etl"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// A short name for this provider, used in logs and messages.
    pub name: String,
    /// The issuer URL, exactly as the provider writes it in `iss` and in its discovery
    /// document (trailing slash included or not, as the provider does). Discovery is read from
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience Vigil requires: the token's `aud` (a string or a list) must contain it.
    pub audience: String,
    /// The claim that names the identity. `sub` (default) for most providers; `client_id` or
    /// `azp` for client-credentials tokens of providers whose `sub` is an opaque id.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// Maps claim values to Vigil identity names. Without it, the claim value is the identity
    /// name. With it, a value missing from the map is refused (`jwt_no_identity`).
    #[serde(default)]
    pub identity_map: Option<BTreeMap<String, String>>,
    /// Whether this provider vouches for machines (default) or humans. An identity declared
    /// with another kind cannot log in with this provider's tokens.
    #[serde(default)]
    pub kind: IdentityKind,
    /// Signature algorithms accepted. Only asymmetric ones: RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384, EdDSA. Default: RS256, ES256, EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf` (whole seconds). Default 30s.
    #[serde(default = "default_leeway", deserialize_with = "deserialize_duration")]
    pub leeway: Duration,
    /// Least time between two fetches of the provider's keys, however many tokens with unknown
    /// `kid`s arrive. Default 10s.
    #[serde(
        default = "default_min_refresh",
        deserialize_with = "deserialize_duration"
    )]
    pub jwks_min_refresh_interval: Duration,
    /// Keys older than this are fetched again before use (so that keys the provider withdrew
    /// stop working). Default 1h.
    #[serde(default = "default_max_age", deserialize_with = "deserialize_duration")]
    pub jwks_max_age: Duration,
    /// Timeout of each HTTP request to the provider. Default 10s.
    #[serde(
        default = "default_http_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub http_timeout: Duration,
    /// Allows a plain-http issuer and `jwks_uri`, and is honoured only when they are on
    /// loopback (127.0.0.0/8, ::1, localhost): for tests and a provider on the same host.
    /// A configuration that sets it for another host is refused. Default false.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_identity_claim() -> String {
    "sub".to_string()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OidcProviderConfig {
    /// A provider with every optional setting at its default.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        OidcProviderConfig {
            name: name.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            identity_claim: default_identity_claim(),
            identity_map: None,
            kind: IdentityKind::Machine,
            algorithms: default_algorithms(),
            leeway: default_leeway(),
            jwks_min_refresh_interval: default_min_refresh(),
            jwks_max_age: default_max_age(),
            http_timeout: default_http_timeout(),
            allow_insecure_http: false,
        }
    }
}

/// A verified token: who it names, and who vouched for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The provider's configured name.
    pub provider: String,
    pub issuer: String,
    /// The `sub` claim, if the token has one.
    pub subject: Option<String>,
    /// The Vigil identity the token names (after `identity_map`).
    pub identity: String,
    /// The provider's `kind`.
    pub kind: IdentityKind,
    /// The token's `exp`.
    pub expires_at: Timestamp,
}

/// How a provider fared at [`OidcVerifier::warm_up`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderStatus {
    pub name: String,
    pub issuer: String,
    /// The number of usable signing keys, or why they could not be fetched.
    pub result: Result<usize, String>,
}

struct Provider {
    config: OidcProviderConfig,
    algorithms: Vec<Algorithm>,
    keys: ProviderKeys,
}

/// Validates OIDC access tokens against the configured providers. Cheap to share (`Arc`);
/// keys are cached per provider.
pub struct OidcVerifier {
    /// By exact issuer string: a token is routed by its `iss`.
    by_issuer: HashMap<String, Arc<Provider>>,
    /// In configuration order, for warm-up and listings.
    ordered: Vec<Arc<Provider>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field(
                "providers",
                &self
                    .ordered
                    .iter()
                    .map(|p| &p.config.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl OidcVerifier {
    /// Checks the configurations (URLs, algorithms, duplicates) and sets up the providers.
    /// Fetches nothing: keys are fetched on first use, or by [`warm_up`](Self::warm_up).
    pub fn new(configs: Vec<OidcProviderConfig>) -> Result<Self, ConfigError> {
        let mut by_issuer: HashMap<String, Arc<Provider>> = HashMap::new();
        let mut ordered: Vec<Arc<Provider>> = Vec::new();
        for config in configs {
            let provider = Arc::new(Provider::new(config)?);
            let c = &provider.config;
            if ordered.iter().any(|p| p.config.name == c.name) {
                return Err(ConfigError::DuplicateProvider(c.name.clone()));
            }
            if let Some(other) = by_issuer.get(&c.issuer) {
                return Err(ConfigError::DuplicateIssuer {
                    first: other.config.name.clone(),
                    second: c.name.clone(),
                    issuer: c.issuer.clone(),
                });
            }
            by_issuer.insert(c.issuer.clone(), provider.clone());
            ordered.push(provider);
        }
        Ok(OidcVerifier { by_issuer, ordered })
    }

    /// The providers' configurations, in the order given.
    pub fn providers(&self) -> impl Iterator<Item = &OidcProviderConfig> {
        self.ordered.iter().map(|p| &p.config)
    }

    /// Fetches discovery and keys of every provider, concurrently. Logs, and reports, the
    /// providers that cannot be reached; never fails (they are retried on first use).
    pub async fn warm_up(&self) -> Vec<ProviderStatus> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, p) in self.ordered.iter().enumerate() {
            let p = p.clone();
            tasks.spawn(async move { (i, p.keys.current().await.map(|s| s.keys.len())) });
        }
        let mut results: Vec<Option<Result<usize, String>>> = vec![None; self.ordered.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, r)) = joined {
                results[i] = Some(r.map_err(|e| e.to_string()));
            }
        }
        self.ordered
            .iter()
            .zip(results)
            .map(|(p, r)| {
                let result = r.unwrap_or_else(|| Err("the warm-up task failed".to_string()));
                match &result {
                    Ok(n) => tracing::info!(provider = %p.config.name, issuer = %p.config.issuer,
                        keys = n, "OIDC provider ready"),
                    Err(e) => tracing::warn!(provider = %p.config.name, issuer = %p.config.issuer,
                        error = %e, "OIDC provider unreachable at startup; will retry on first use"),
                }
                ProviderStatus {
                    name: p.config.name.clone(),
                    issuer: p.config.issuer.clone(),
                    result,
                }
            })
            .collect()
    }

    /// Verifies a JWT access token and resolves the identity it names. See the module docs for
    /// the checks and the reason each failure gives.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthRejection> {
        let peeked = peek::peek(token)?;
        let reject = |reason: AuthFailureReason, detail: String| {
            AuthRejection::new(reason, detail).with_token_context(peeked.issuer(), peeked.subject())
        };

        // The header first: these are refused whatever the token claims to be.
        if peeked.alg.eq_ignore_ascii_case("none") {
            return Err(reject(
                AuthFailureReason::JwtAlgNone,
                "the token is unsigned (alg \"none\")".into(),
            ));
        }
        if peeked.alg.to_ascii_uppercase().starts_with("HS") {
            return Err(reject(
                AuthFailureReason::JwtAlgorithmNotAllowed,
                format!(
                    "HMAC-signed tokens ({}) are refused: only signatures by the provider's published asymmetric keys are accepted",
                    short(&peeked.alg)
                ),
            ));
        }
        if let Err(why) = &peeked.payload {
            return Err(reject(AuthFailureReason::JwtMalformed, (*why).into()));
        }

        // Route by the unverified `iss`; it is verified below, with the provider's keys.
        let Some(issuer) = peeked.issuer() else {
            return Err(reject(
                AuthFailureReason::JwtMalformed,
                "the token has no `iss` claim (or it is not a string)".into(),
            ));
        };
        let Some(provider) = self.by_issuer.get(issuer) else {
            return Err(reject(
                AuthFailureReason::JwtWrongIssuer,
                format!(
                    "issuer {:?} is not a configured OIDC provider",
                    crate::rejection::sanitize(issuer)
                ),
            ));
        };
        let name = &provider.config.name;

        let alg = match Algorithm::from_str(&peeked.alg) {
            Ok(a) if provider.algorithms.contains(&a) => a,
            _ => {
                return Err(reject(
                    AuthFailureReason::JwtAlgorithmNotAllowed,
                    format!(
                        "algorithm {:?} is not allowed for provider {name} (allowed: {})",
                        short(&peeked.alg),
                        provider.config.algorithms.join(", ")
                    ),
                ))
            }
        };

        let candidates = self
            .find_keys(provider, peeked.kid.as_deref(), alg)
            .await
            .map_err(|(reason, detail)| reject(reason, detail))?;

        let validation = provider.validation(alg);
        let mut last_err = None;
        let mut claims = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                // Without a kid, several keys may fit: try the next on a bad signature only.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    last_err = Some((e, key));
                }
                Err(e) => {
                    last_err = Some((e, key));
                    break;
                }
            }
        }
        let claims = match (claims, last_err) {
            (Some(c), _) => c,
            (None, Some((e, key))) => {
                let (reason, detail) = provider.explain(&e, key);
                return Err(reject(reason, detail));
            }
            (None, None) => {
                return Err(reject(
                    AuthFailureReason::JwtUnknownKey,
                    format!("provider {name} publishes no key for this token"),
                ))
            }
        };

        // jsonwebtoken skips an `nbf` it cannot read; a token must not escape the check that way.
        if claims.get("nbf").is_some_and(|v| !v.is_number()) {
            return Err(reject(
                AuthFailureReason::JwtMalformed,
                "the token's `nbf` is not a number".into(),
            ));
        }
        let identity = provider
            .identity(&claims)
            .map_err(|detail| reject(AuthFailureReason::JwtNoIdentity, detail))?;
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
        Ok(VerifiedToken {
            provider: name.clone(),
            issuer: provider.config.issuer.clone(),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .map(str::to_string),
            identity,
            kind: provider.config.kind,
            expires_at: Timestamp::from_micros((exp * 1e6) as i64),
        })
    }

    /// The keys that may have signed a token with `kid` and `alg`; refreshes the provider's
    /// keys once (rate-limited) when none is known.
    async fn find_keys(
        &self,
        provider: &Provider,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<PublicKey>, (AuthFailureReason, String)> {
        let name = &provider.config.name;
        let unavailable = |e: keys::FetchError| {
            (
                AuthFailureReason::ProviderUnavailable,
                format!("the signing keys of provider {name} could not be fetched: {e}"),
            )
        };
        let set = provider.keys.current().await.map_err(unavailable)?;
        match select(&set, kid, alg) {
            Selection::Found(keys) => return Ok(keys),
            Selection::WrongKind(detail) => {
                return Err((AuthFailureReason::JwtAlgorithmNotAllowed, detail))
            }
            Selection::NotFound => {}
        }
        // Maybe the provider rotated its keys: look again, once.
        let (set, failure) = match provider.keys.refresh_after(set.generation).await {
            Refresh::Fetched(s) | Refresh::RateLimited(s) => (s, None),
            Refresh::Failed(s, e) => (s, Some(e)),
        };
        match select(&set, kid, alg) {
            Selection::Found(keys) => Ok(keys),
            Selection::WrongKind(detail) => {
                Err((AuthFailureReason::JwtAlgorithmNotAllowed, detail))
            }
            Selection::NotFound => match failure {
                Some(e) => Err(unavailable(e)),
                None => Err((
                    AuthFailureReason::JwtUnknownKey,
                    match kid {
                        Some(k) => format!(
                            "provider {name} publishes no key with kid {:?}",
                            crate::rejection::sanitize(k)
                        ),
                        None => format!(
                            "the token has no kid and provider {name} publishes no key for {alg:?}"
                        ),
                    },
                )),
            },
        }
    }
}

enum Selection {
    Found(Vec<PublicKey>),
    /// A key with the token's kid exists, but it may not verify the token's algorithm.
    WrongKind(String),
    NotFound,
}

fn select(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Selection {
    match kid {
        Some(kid) => {
            let same_kid: Vec<&PublicKey> = set
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            let fitting: Vec<PublicKey> = same_kid
                .iter()
                .filter(|k| k.accepts(alg))
                .map(|k| (*k).clone())
                .collect();
            if !fitting.is_empty() {
                Selection::Found(fitting)
            } else if let Some(k) = same_kid.first() {
                Selection::WrongKind(format!(
                    "the token says {alg:?} but {} may not verify {alg:?}",
                    k.describe()
                ))
            } else {
                Selection::NotFound
            }
        }
        None => {
            let fitting: Vec<PublicKey> = set
                .keys
                .iter()
                .filter(|k| k.accepts(alg))
                .cloned()
                .collect();
            if fitting.is_empty() {
                Selection::NotFound
            } else {
                Selection::Found(fitting)
            }
        }
    }
}

impl Provider {
    fn new(config: OidcProviderConfig) -> Result<Self, ConfigError> {
        let name = config.name.clone();
        if name.trim().is_empty() {
            return Err(ConfigError::EmptyProviderName);
        }
        let url = Url::parse(&config.issuer).map_err(|e| ConfigError::BadIssuer {
            provider: name.clone(),
            issuer: config.issuer.clone(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "https" => {
                if config.allow_insecure_http && !keys::is_loopback(&url) {
                    return Err(ConfigError::InsecureNotLoopback {
                        provider: name,
                        issuer: config.issuer.clone(),
                    });
                }
            }
            "http" => {
                if !keys::url_allowed(&url, config.allow_insecure_http) {
                    return Err(if config.allow_insecure_http {
                        ConfigError::InsecureNotLoopback {
                            provider: name,
                            issuer: config.issuer.clone(),
                        }
                    } else {
                        ConfigError::InsecureIssuer {
                            provider: name,
                            issuer: config.issuer.clone(),
                        }
                    });
                }
            }
            other => {
                return Err(ConfigError::BadIssuer {
                    provider: name,
                    issuer: config.issuer.clone(),
                    reason: format!("scheme {other:?} is not https"),
                })
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::BadIssuer {
                provider: name,
                issuer: config.issuer.clone(),
                reason: "an issuer has no query nor fragment".into(),
            });
        }
        if config.audience.is_empty() {
            return Err(ConfigError::EmptyAudience(name));
        }
        if config.identity_claim.is_empty() {
            return Err(ConfigError::EmptyIdentityClaim(name));
        }
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms(name));
        }
        let mut algorithms = Vec::new();
        for a in &config.algorithms {
            let bad = |reason: &str| ConfigError::BadAlgorithm {
                provider: name.clone(),
                algorithm: a.clone(),
                reason: reason.into(),
            };
            match Algorithm::from_str(a) {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    return Err(bad(
                        "HMAC algorithms are never accepted for OIDC tokens (they would let anyone holding the provider's public key forge tokens)",
                    ))
                }
                Ok(alg) => algorithms.push(alg),
                Err(_) => {
                    return Err(bad(
                        "expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                    ))
                }
            }
        }
        let http = reqwest::Client::builder()
            .https_only(!config.allow_insecure_http)
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout.min(Duration::from_secs(5)))
            .redirect(redirect_policy(config.allow_insecure_http))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient {
                provider: name.clone(),
                reason: e.to_string(),
            })?;
        let keys = ProviderKeys::new(
            name,
            config.issuer.clone(),
            config.allow_insecure_http,
            config.jwks_min_refresh_interval,
            config.jwks_max_age,
            http,
        );
        Ok(Provider {
            config,
            algorithms,
            keys,
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.config.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v
    }

    /// Turns a jsonwebtoken error into a reason and a detail free of claim values.
    fn explain(
        &self,
        e: &jsonwebtoken::errors::Error,
        key: &PublicKey,
    ) -> (AuthFailureReason, String) {
        use AuthFailureReason as R;
        let c = &self.config;
        match e.kind() {
            ErrorKind::InvalidSignature => (
                R::JwtBadSignature,
                format!(
                    "the signature does not verify with {} of provider {}",
                    key.describe(),
                    c.name
                ),
            ),
            ErrorKind::ExpiredSignature => (
                R::JwtExpired,
                format!(
                    "the token has expired (exp is more than {}s in the past)",
                    c.leeway.as_secs()
                ),
            ),
            ErrorKind::ImmatureSignature => (
                R::JwtNotYetValid,
                format!(
                    "the token is not valid yet (nbf is more than {}s in the future)",
                    c.leeway.as_secs()
                ),
            ),
            ErrorKind::InvalidAudience => (
                R::JwtWrongAudience,
                format!("the token's aud does not contain {:?}", c.audience),
            ),
            ErrorKind::InvalidIssuer => (
                R::JwtWrongIssuer,
                format!("the token's iss is not {:?}", c.issuer),
            ),
            ErrorKind::InvalidAlgorithm => (
                R::JwtAlgorithmNotAllowed,
                format!("the algorithm does not fit {}", key.describe()),
            ),
            ErrorKind::MissingRequiredClaim(claim) => (
                R::JwtMalformed,
                format!("the token lacks the required claim `{claim}` (or it has the wrong type)"),
            ),
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::Crypto(_) => (
                R::JwtBadSignature,
                format!(
                    "the signature could not be verified with {}",
                    key.describe()
                ),
            ),
            _ => (
                R::JwtMalformed,
                "the token is not a well-formed JWT".to_string(),
            ),
        }
    }

    /// The Vigil identity the (verified) claims name.
    fn identity(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let c = &self.config;
        let value = match claims.get(&c.identity_claim) {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return Err(format!(
                    "the token has no non-empty string claim `{}` (provider {}'s identity_claim)",
                    c.identity_claim, c.name
                ))
            }
        };
        match &c.identity_map {
            None => Ok(value.clone()),
            Some(map) => map.get(value).cloned().ok_or_else(|| {
                format!(
                    "the token's `{}` maps to no identity in provider {}'s identity_map",
                    c.identity_claim, c.name
                )
            }),
        }
    }
}

/// Follows at most three redirects, and only to URLs Vigil may fetch from (a redirect must not
/// lead a loopback-only plain-http exception off the host).
fn redirect_policy(allow_insecure_http: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 3 {
            attempt.error("more than 3 redirects")
        } else if keys::url_allowed(attempt.url(), allow_insecure_http) {
            attempt.follow()
        } else {
            attempt
                .error("redirect to a URL that is neither https nor an allowed loopback http URL")
        }
    })
}

/// A header value echoed in a message: short, printable.
fn short(s: &str) -> String {
    crate::rejection::sanitize(&s.chars().take(16).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(issuer: &str) -> OidcProviderConfig {
        OidcProviderConfig::new("p", issuer, "vigil")
    }

    #[test]
    fn config_defaults_from_toml_like_json() {
        let c: OidcProviderConfig = serde_json::from_str(
            r#"{"name": "idp", "issuer": "https://idp.example.com", "audience": "vigil"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            OidcProviderConfig::new("idp", "https://idp.example.com", "vigil")
        );
        assert_eq!(c.identity_claim, "sub");
        assert_eq!(c.algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(c.leeway, Duration::from_secs(30));
        assert_eq!(c.jwks_min_refresh_interval, Duration::from_secs(10));
        assert!(!c.allow_insecure_http);

        let c: OidcProviderConfig = serde_json::from_str(
            r#"{"name": "idp", "issuer": "https://idp", "audience": "a", "leeway": "5s",
                "identity_claim": "client_id", "identity_map": {"c1": "etl"}, "kind": "human",
                "algorithms": ["PS256"], "jwks_min_refresh_interval": 1}"#,
        )
        .unwrap();
        assert_eq!(c.leeway, Duration::from_secs(5));
        assert_eq!(c.kind, IdentityKind::Human);
        assert_eq!(c.identity_map.unwrap()["c1"], "etl");
        assert_eq!(c.jwks_min_refresh_interval, Duration::from_secs(1));
        assert!(serde_json::from_str::<OidcProviderConfig>(
            r#"{"name": "idp", "issuer": "https://idp", "audience": "a", "audiance": "b"}"#
        )
        .is_err());
    }

    #[test]
    fn refuses_bad_configurations() {
        let err = |c: OidcProviderConfig| OidcVerifier::new(vec![c]).unwrap_err();
        assert!(matches!(
            err(cfg("http://idp.example.com")),
            ConfigError::InsecureIssuer { .. }
        ));
        assert!(matches!(
            err(cfg("not a url")),
            ConfigError::BadIssuer { .. }
        ));
        let mut c = cfg("http://idp.example.com");
        c.allow_insecure_http = true;
        assert!(matches!(err(c), ConfigError::InsecureNotLoopback { .. }));
        let mut c = cfg("https://idp.example.com");
        c.allow_insecure_http = true;
        assert!(matches!(err(c), ConfigError::InsecureNotLoopback { .. }));
        let mut c = cfg("https://idp.example.com");
        c.algorithms = vec!["RS256".into(), "HS256".into()];
        let e = err(c);
        assert!(e.to_string().contains("HMAC"), "{e}");
        let mut c = cfg("https://idp.example.com");
        c.algorithms = vec!["none".into()];
        assert!(matches!(err(c), ConfigError::BadAlgorithm { .. }));
        let mut c = cfg("https://idp.example.com");
        c.algorithms.clear();
        assert!(matches!(err(c), ConfigError::NoAlgorithms(_)));
        let mut c = cfg("https://idp.example.com");
        c.audience.clear();
        assert!(matches!(err(c), ConfigError::EmptyAudience(_)));

        let mut loopback = cfg("http://127.0.0.1:9999");
        loopback.allow_insecure_http = true;
        assert!(OidcVerifier::new(vec![loopback]).is_ok());

        let a = cfg("https://idp.example.com");
        let mut b = cfg("https://idp.example.com");
        b.name = "q".into();
        assert!(matches!(
            OidcVerifier::new(vec![a.clone(), b]).unwrap_err(),
            ConfigError::DuplicateIssuer { .. }
        ));
        let mut c = cfg("https://other.example.com");
        c.name = a.name.clone();
        assert!(matches!(
            OidcVerifier::new(vec![a, c]).unwrap_err(),
            ConfigError::DuplicateProvider(_)
        ));
    }
}
