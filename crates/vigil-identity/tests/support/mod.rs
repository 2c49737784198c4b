//! Shared test doubles: an in-memory `TokenStore`, a minimal OIDC provider over HTTP on loopback
//! (discovery + JWKS, with hit counters and switches), and signing keys generated locally.
#![allow(dead_code)] // each test binary uses a different part

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::Timestamp;
use vigil_identity::OidcProviderConfig;
use vigil_store::{StoreError, TokenRecord, TokenStore};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub const AUDIENCE: &str = "vigil";

// --- store ------------------------------------------------------------------------------------

/// A `TokenStore` in memory.
#[derive(Default)]
pub struct MemStore {
    pub tokens: Mutex<Vec<TokenRecord>>,
    /// When set, every call fails as a broken store would.
    pub broken: AtomicBool,
}

impl MemStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::Backend("disk on fire".into()))
        } else {
            Ok(())
        }
    }
}

impl TokenStore for MemStore {
    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.check()?;
        let mut t = self.tokens.lock();
        if t.iter().any(|r| r.id == token.id || r.hash == token.hash) {
            return Err(StoreError::Backend("duplicate token".into()));
        }
        t.push(token.clone());
        Ok(())
    }
    fn find_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.check()?;
        Ok(self.tokens.lock().iter().find(|r| &r.hash == hash).cloned())
    }
    fn list_tokens(&self, identity: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.check()?;
        Ok(self
            .tokens
            .lock()
            .iter()
            .filter(|r| identity.is_none_or(|i| r.identity == i))
            .cloned()
            .collect())
    }
    fn revoke_token(&self, id: &str, at: Timestamp) -> Result<Option<TokenRecord>, StoreError> {
        self.check()?;
        let mut t = self.tokens.lock();
        Ok(t.iter_mut().find(|r| r.id == id).map(|r| {
            r.revoked_at.get_or_insert(at);
            r.clone()
        }))
    }
}

// --- keys -------------------------------------------------------------------------------------

/// A signing key made for one test, with its public JWK.
pub struct LocalKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK (with `kid`, without `alg`/`use` unless a test adds them).
    pub jwk: Value,
    /// RSA only: the SPKI public key PEM.
    pub public_pem: Option<String>,
}

#[derive(serde::Deserialize)]
struct RsaFixture {
    kid: String,
    n: String,
    e: String,
    private_pkcs8_pem: String,
    public_spki_pem: String,
}

fn rsa_fixtures() -> Vec<RsaFixture> {
    #[derive(serde::Deserialize)]
    struct File {
        keys: Vec<RsaFixture>,
    }
    let f: File =
        serde_json::from_str(include_str!("../fixtures/rsa-test-keys.json")).expect("fixture");
    f.keys
}

impl LocalKey {
    pub fn ec_p256(kid: &str) -> Self {
        Self::ec(
            kid,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
            Algorithm::ES256,
        )
    }

    pub fn ec_p384(kid: &str) -> Self {
        Self::ec(
            kid,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
            Algorithm::ES384,
        )
    }

    fn ec(
        kid: &str,
        ring_alg: &'static ring::signature::EcdsaSigningAlgorithm,
        crv: &str,
        alg: Algorithm,
    ) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(ring_alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(ring_alg, pkcs8.as_ref(), &rng).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        LocalKey {
            kid: kid.into(),
            alg,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": crv, "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
                "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
            }),
            public_pem: None,
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        LocalKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
            public_pem: None,
        }
    }

    /// One of the two fixture RSA keys (`index` 0 or 1), under `kid`.
    pub fn rsa(index: usize, kid: &str) -> Self {
        let f = rsa_fixtures().swap_remove(index);
        let _ = f.kid;
        LocalKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(f.private_pkcs8_pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "RSA", "n": f.n, "e": f.e, "kid": kid}),
            public_pem: Some(f.public_spki_pem),
        }
    }

    /// Signs with this key's algorithm and kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    /// Signs with `alg` (which must fit the key) and the given kid header.
    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[&LocalKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for `sub`, from `issuer`, for [`AUDIENCE`], expiring in five minutes.
pub fn claims(issuer: &str, sub: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 300,
        "jti": "jti-marker-7f3a",
    })
}

/// Sets (or with `Value::Null`, removes) one claim.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    let m = claims.as_object_mut().unwrap();
    if value.is_null() {
        m.remove(name);
    } else {
        m.insert(name.into(), value);
    }
    claims
}

// --- a minimal OpenID Provider ----------------------------------------------------------------

pub struct MockState {
    pub jwks: Value,
    /// `issuer` the discovery document claims (default: the real one).
    pub discovery_issuer: Option<String>,
    /// When set, every request is answered 503.
    pub down: bool,
    /// When set, `/jwks` redirects there (and `/jwks-real` serves the key set).
    pub jwks_redirect: Option<String>,
    pub discovery_hits: usize,
    pub jwks_hits: usize,
}

/// Serves `/.well-known/openid-configuration` and `/jwks` on 127.0.0.1, one thread per
/// connection, `Connection: close`.
pub struct MockIdp {
    pub issuer: String,
    pub state: Arc<Mutex<MockState>>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl MockIdp {
    pub fn start(keys: &[&LocalKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(Mutex::new(MockState {
            jwks: jwks(keys),
            discovery_issuer: None,
            down: false,
            jwks_redirect: None,
            discovery_hits: 0,
            jwks_hits: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (state, stop, issuer) = (state.clone(), stop.clone(), issuer.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, issuer) = (state.clone(), issuer.clone());
                    std::thread::spawn(move || serve(conn, &state, &issuer));
                }
            });
        }
        MockIdp {
            issuer,
            state,
            addr,
            stop,
        }
    }

    pub fn set_keys(&self, keys: &[&LocalKey]) {
        self.state.lock().jwks = jwks(keys);
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.lock().jwks_hits
    }

    /// A configuration trusting this provider, for [`AUDIENCE`].
    pub fn config(&self, name: &str) -> OidcProviderConfig {
        let mut c = OidcProviderConfig::new(name, &self.issuer, AUDIENCE);
        c.allow_insecure_http = true;
        c
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<MockState>, issuer: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut location = None;
    let (status, body) = {
        let mut st = state.lock();
        if st.down {
            ("503 Service Unavailable", json!({"error": "down"}))
        } else if path == "/.well-known/openid-configuration" {
            st.discovery_hits += 1;
            let iss = st
                .discovery_issuer
                .clone()
                .unwrap_or_else(|| issuer.to_string());
            (
                "200 OK",
                json!({"issuer": iss, "jwks_uri": format!("{issuer}/jwks")}),
            )
        } else if path == "/jwks" && st.jwks_redirect.is_some() {
            location = st.jwks_redirect.clone();
            ("302 Found", json!({}))
        } else if path == "/jwks" || path == "/jwks-real" {
            st.jwks_hits += 1;
            ("200 OK", st.jwks.clone())
        } else {
            ("404 Not Found", json!({"error": "not found"}))
        }
    };
    let body = body.to_string();
    let location = location.map_or(String::new(), |l| format!("Location: {l}\r\n"));
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
