//! A provider's signing keys: discovery, JWKS fetching and the cache.
//!
//! Keys are fetched on first use (or by `warm_up`), kept, and fetched again when they are older
//! than `jwks_max_age`, or when a token names a `kid` the cache does not hold (the provider
//! rotated its keys). Fetches are serialised per provider and never closer together than
//! `jwks_min_refresh_interval`, so that a flood of tokens with made-up `kid`s cannot turn Vigil
//! into a load generator against the provider. When a fetch fails, the keys already held are
//! kept: an outage of the provider does not lock out tokens it signed before.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde::Deserialize;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys taken from one JWKS (real ones hold a handful).
const MAX_KEYS: usize = 100;

/// The kind of a public key, which fixes the algorithms it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`. This is what stops algorithm confusion: an
    /// RSA key verifies only RSA signatures, never an HMAC keyed with its public bytes.
    pub fn supports(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "EC P-256",
            KeyKind::P384 => "EC P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }
}

/// One usable signature-verification key.
#[derive(Clone)]
pub(crate) struct PublicKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl PublicKey {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.supports(alg) && self.alg.is_none_or(|a| a == alg)
    }

    pub fn describe(&self) -> String {
        match &self.kid {
            Some(k) => format!("key {k:?} ({})", self.kind.name()),
            None => format!("a key without kid ({})", self.kind.name()),
        }
    }
}

/// A snapshot of a provider's keys.
pub(crate) struct KeySet {
    /// Bumped on every successful fetch, so that a waiter can tell whether someone else
    /// refreshed while it waited.
    pub generation: u64,
    /// When these keys were fetched; `None` before the first successful fetch.
    pub fetched_at: Option<Instant>,
    pub keys: Vec<PublicKey>,
}

/// Why a provider's keys could not be fetched. Messages name URLs, never tokens.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("GET {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("GET {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than 1 MiB")]
    TooLarge { url: String },
    #[error("{url} is not the expected JSON document: {reason}")]
    BadDocument { url: String, reason: String },
    #[error("the discovery document names issuer {found:?}, not the configured {expected:?}; fix `issuer` in the configuration (it must match exactly, trailing slash included)")]
    IssuerMismatch { expected: String, found: String },
    #[error("jwks_uri {0:?} is not https (plain http is allowed only on loopback with allow_insecure_http)")]
    InsecureJwksUri(String),
    #[error("no fetch yet: the last attempt failed less than jwks_min_refresh_interval ago ({0})")]
    Backoff(String),
}

/// Outcome of asking for a refresh.
pub(crate) enum Refresh {
    /// Keys were fetched now (or by another task while this one waited).
    Fetched(Arc<KeySet>),
    /// Too soon after the last fetch: nothing was fetched.
    RateLimited(Arc<KeySet>),
    /// The fetch failed; the keys held before are returned.
    Failed(Arc<KeySet>, FetchError),
}

struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<FetchError>,
    /// From discovery; forgotten when a JWKS fetch fails, so that the next refresh rediscovers.
    jwks_uri: Option<Url>,
}

/// The key cache of one provider.
pub(crate) struct ProviderKeys {
    pub name: String,
    pub issuer: String,
    allow_insecure_http: bool,
    min_refresh_interval: Duration,
    max_age: Duration,
    http: reqwest::Client,
    cache: parking_lot::RwLock<Arc<KeySet>>,
    /// Held across a fetch: one fetch at a time per provider.
    refresh: tokio::sync::Mutex<RefreshState>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl ProviderKeys {
    pub fn new(
        name: String,
        issuer: String,
        allow_insecure_http: bool,
        min_refresh_interval: Duration,
        max_age: Duration,
        http: reqwest::Client,
    ) -> Self {
        ProviderKeys {
            name,
            issuer,
            allow_insecure_http,
            min_refresh_interval,
            max_age,
            http,
            cache: parking_lot::RwLock::new(Arc::new(KeySet {
                generation: 0,
                fetched_at: None,
                keys: Vec::new(),
            })),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_attempt: None,
                last_error: None,
                jwks_uri: None,
            }),
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.cache.read().clone()
    }

    /// The keys to verify with: the cached ones, fetched first if there are none yet or they are
    /// older than `jwks_max_age`. Stale keys are still returned when a fetch fails; an error
    /// only when no keys were ever fetched.
    pub async fn current(&self) -> Result<Arc<KeySet>, FetchError> {
        let set = self.snapshot();
        if set.fetched_at.is_some_and(|t| t.elapsed() < self.max_age) {
            return Ok(set);
        }
        match self.refresh_after(set.generation).await {
            Refresh::Fetched(s) => Ok(s),
            Refresh::RateLimited(s) if s.fetched_at.is_some() => Ok(s),
            Refresh::Failed(s, e) => {
                if s.fetched_at.is_some() {
                    tracing::warn!(provider = %self.name, error = %e,
                        "OIDC keys are stale and could not be refreshed; using the cached ones");
                    Ok(s)
                } else {
                    Err(e)
                }
            }
            Refresh::RateLimited(_) => {
                let st = self.refresh.lock().await;
                Err(FetchError::Backoff(st.last_error.as_ref().map_or_else(
                    || "unknown error".to_string(),
                    ToString::to_string,
                )))
            }
        }
    }

    /// Fetches the keys again, unless another task already did since the caller saw
    /// generation `seen`, or the last fetch was less than `jwks_min_refresh_interval` ago.
    pub async fn refresh_after(&self, seen: u64) -> Refresh {
        let mut st = self.refresh.lock().await;
        let set = self.snapshot();
        if set.generation != seen {
            return Refresh::Fetched(set);
        }
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh_interval)
        {
            return Refresh::RateLimited(set);
        }
        st.last_attempt = Some(Instant::now());
        match self.fetch(&mut st).await {
            Ok(keys) => {
                if keys.is_empty() {
                    tracing::warn!(provider = %self.name,
                        "the provider's JWKS holds no usable signature key");
                }
                tracing::debug!(provider = %self.name, keys = keys.len(), "fetched OIDC signing keys");
                st.last_error = None;
                let new = Arc::new(KeySet {
                    generation: set.generation + 1,
                    fetched_at: Some(Instant::now()),
                    keys,
                });
                *self.cache.write() = new.clone();
                Refresh::Fetched(new)
            }
            Err(e) => {
                tracing::warn!(provider = %self.name, error = %e, "cannot fetch OIDC signing keys");
                st.last_error = Some(e.clone());
                Refresh::Failed(set, e)
            }
        }
    }

    async fn fetch(&self, st: &mut RefreshState) -> Result<Vec<PublicKey>, FetchError> {
        let jwks_uri = match &st.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let u = self.discover().await?;
                st.jwks_uri = Some(u.clone());
                u
            }
        };
        match self.get_json::<RawJwks>(jwks_uri.clone()).await {
            Ok(raw) => Ok(self.parse_jwks(raw)),
            Err(e) => {
                st.jwks_uri = None;
                Err(e)
            }
        }
    }

    /// Reads `{issuer}/.well-known/openid-configuration` and returns its `jwks_uri`.
    async fn discover(&self) -> Result<Url, FetchError> {
        // OIDC Discovery §4: drop the issuer's trailing slash before appending.
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let parsed = Url::parse(&url).map_err(|e| FetchError::BadDocument {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let doc: Discovery = self.get_json(parsed).await?;
        // OIDC Discovery §4.3: the document must be about this issuer, exactly.
        if doc.issuer != self.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: doc.issuer,
            });
        }
        let jwks_uri = Url::parse(&doc.jwks_uri).map_err(|e| FetchError::BadDocument {
            url,
            reason: format!("jwks_uri: {e}"),
        })?;
        if !url_allowed(&jwks_uri, self.allow_insecure_http) {
            return Err(FetchError::InsecureJwksUri(doc.jwks_uri));
        }
        Ok(jwks_uri)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T, FetchError> {
        let shown = url.to_string();
        let http_err = |e: reqwest::Error| FetchError::Http {
            url: shown.clone(),
            reason: error_chain(&e),
        };
        let mut resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge { url: shown });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::BadDocument {
            url: shown,
            reason: e.to_string(),
        })
    }

    /// Keeps the keys that can verify signatures; skips (with a debug line) the rest:
    /// encryption keys, symmetric keys (which have no place in a public key set, and would
    /// open the door to HMAC forgeries), curves or algorithms jsonwebtoken does not implement.
    fn parse_jwks(&self, raw: RawJwks) -> Vec<PublicKey> {
        let mut out = Vec::new();
        for value in raw.keys.into_iter().take(MAX_KEYS) {
            match parse_jwk(value) {
                Ok(k) => out.push(k),
                Err(why) => tracing::debug!(provider = %self.name, why, "skipping a JWKS key"),
            }
        }
        out
    }
}

fn parse_jwk(value: serde_json::Value) -> Result<PublicKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "not a JWK jsonwebtoken reads")?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("not a signature key (use)");
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("not a verification key (key_ops)");
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err("unsupported elliptic curve"),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported OKP curve"),
        },
        AlgorithmParameters::OctetKey(_) => return Err("symmetric key"),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => {
            let alg =
                Algorithm::from_str(&a.to_string()).map_err(|_| "not a signature algorithm")?;
            if !kind.supports(alg) {
                return Err("alg does not fit the key type");
            }
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "unusable key material")?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key,
    })
}

/// Whether Vigil may fetch from `url`: https always; plain http only on loopback, and only when
/// the provider's configuration allows it (tests, a provider on the same host).
pub(crate) fn url_allowed(url: &Url, allow_insecure_http: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => allow_insecure_http && is_loopback(url),
        _ => false,
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed (`[::1]`).
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// An error and its causes on one line (reqwest's own message omits the cause, e.g.
/// "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loopback_and_scheme_rules() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(url_allowed(&u("https://idp.example.com/jwks"), false));
        assert!(!url_allowed(&u("http://idp.example.com/jwks"), true));
        assert!(!url_allowed(&u("http://127.0.0.1:8080/jwks"), false));
        assert!(url_allowed(&u("http://127.0.0.1:8080/jwks"), true));
        assert!(url_allowed(&u("http://127.9.9.9/jwks"), true));
        assert!(url_allowed(&u("http://[::1]:80/jwks"), true));
        assert!(url_allowed(&u("http://localhost:80/jwks"), true));
        assert!(!url_allowed(&u("http://10.0.0.1/jwks"), true));
        assert!(!url_allowed(&u("ftp://127.0.0.1/jwks"), true));
    }

    #[test]
    fn key_kinds_bind_algorithms() {
        use Algorithm::*;
        assert!(KeyKind::Rsa.supports(RS256) && KeyKind::Rsa.supports(PS512));
        assert!(!KeyKind::Rsa.supports(HS256) && !KeyKind::Rsa.supports(ES256));
        assert!(KeyKind::P256.supports(ES256) && !KeyKind::P256.supports(ES384));
        assert!(KeyKind::Ed25519.supports(EdDSA) && !KeyKind::Ed25519.supports(ES256));
    }

    #[test]
    fn jwks_parsing_keeps_only_signature_keys() {
        // A real-looking Ed25519 public key (32 bytes) and an RSA modulus.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let raw = RawJwks {
            keys: vec![
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed"}),
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": "rsa", "alg": "RS256", "use": "sig"}),
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": "enc", "use": "enc"}),
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": "oaep", "alg": "RSA-OAEP"}),
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": "mismatch", "alg": "ES256"}),
                json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
                json!({"kty": "OKP", "crv": "X25519", "x": x, "kid": "x25519"}),
                json!({"kty": "AKP", "alg": "ML-DSA-44", "pub": "AAAA", "kid": "pq"}),
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": "ops", "key_ops": ["encrypt"]}),
            ],
        };
        let pk = ProviderKeys::new(
            "t".into(),
            "https://idp".into(),
            false,
            Duration::ZERO,
            Duration::ZERO,
            reqwest::Client::new(),
        );
        let keys = pk.parse_jwks(raw);
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["ed", "rsa"]);
        assert_eq!(keys[0].kind, KeyKind::Ed25519);
        assert_eq!(keys[1].alg, Some(Algorithm::RS256));
        assert!(keys[1].accepts(Algorithm::RS256) && !keys[1].accepts(Algorithm::PS256));
    }
}
