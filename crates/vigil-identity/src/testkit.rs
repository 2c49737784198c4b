//! Test support (feature `testkit`): a real OpenID Provider in a child process, and tokens
//! forged with its own private keys. **Never enable this feature in a shipped binary.**
//!
//! The provider is [`oidc-provider`](https://github.com/panva/node-oidc-provider) on Node.js,
//! driven by `testsupport/oidc-provider/server.mjs` of this repository. Starting one:
//!
//! 1. runs `npm ci` in that folder if its `node_modules` is missing (once, under a lock, so
//!    that parallel tests and test binaries do not race);
//! 2. has it generate fresh RS256, ES256 and EdDSA signing keys into a temporary directory;
//! 3. starts it on a free port of 127.0.0.1 and waits for its readiness line;
//! 4. registers confidential machine clients for the `client_credentials` grant, whose access
//!    tokens are JWTs for [`OidcTestProvider::audience`].
//!
//! Dropping the [`OidcTestProvider`] kills the process; the process also exits by itself when
//! the test process dies (it watches its standard input).
//!
//! ```no_run
//! # async fn demo() {
//! use vigil_identity::testkit::OidcTestProvider;
//! let Some(idp) = OidcTestProvider::start_or_skip("my_test") else { return };
//! let token = idp.client_credentials_token().await.unwrap();
//! let config = idp.provider_config("test-idp"); // trust it (identity = the client id)
//! # let _ = (token, config);
//! # }
//! ```
//!
//! Environment: `VIGIL_OIDC_PROVIDER_DIR` overrides where `server.mjs` is;
//! `VIGIL_TEST_REQUIRE_NODE=1` turns "node is missing, skipping" into a failure (for CI).

use crate::oidc::OidcProviderConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The audience of the provider's access tokens, unless [`OidcTestOptions`] says otherwise.
pub const DEFAULT_AUDIENCE: &str = "vigil-test";
/// The client registered by default.
pub const DEFAULT_CLIENT_ID: &str = "vigil-test-machine";
/// The default resource indicator: tokens for [`DEFAULT_AUDIENCE`], signed RS256.
pub const DEFAULT_RESOURCE: &str = "urn:vigil:gateway";

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const NPM_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors of the test harness. Messages carry the provider's stderr when it helps.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("node is not installed (or not on PATH); the OIDC provider tests need Node.js >= 20.19 and npm")]
    NodeMissing,
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

fn failed(what: impl Into<String>, reason: impl ToString) -> TestkitError {
    TestkitError::Failed {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// A confidential machine client of the test provider.
#[derive(Clone, Debug)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: String,
}

impl TestClient {
    /// A client with a random secret.
    pub fn new(client_id: impl Into<String>) -> Self {
        let mut b = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut b);
        TestClient {
            client_id: client_id.into(),
            client_secret: URL_SAFE_NO_PAD.encode(b),
        }
    }
}

/// How to start a provider.
#[derive(Clone, Debug)]
pub struct OidcTestOptions {
    /// `aud` of access tokens for the default resource.
    pub audience: String,
    /// Registered clients (at least one; the first is the default).
    pub clients: Vec<TestClient>,
    /// Lifetime of issued access tokens.
    pub access_token_ttl: Duration,
}

impl Default for OidcTestOptions {
    fn default() -> Self {
        OidcTestOptions {
            audience: DEFAULT_AUDIENCE.to_string(),
            clients: vec![TestClient::new(DEFAULT_CLIENT_ID)],
            access_token_ttl: Duration::from_secs(600),
        }
    }
}

/// One of the provider's signing keys, private half included (to forge tokens in tests).
#[derive(Clone, Debug, Deserialize)]
pub struct TestSigningKey {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    pub private_pkcs8_pem: String,
    pub public_spki_pem: String,
    /// RSA only: the public key as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`).
    #[serde(default)]
    pub public_pkcs1_pem: Option<String>,
}

impl TestSigningKey {
    pub fn algorithm(&self) -> Algorithm {
        self.alg
            .parse()
            .expect("the provider's keys use algorithms jsonwebtoken knows")
    }

    pub fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pkcs8_pem.as_bytes();
        match self.algorithm() {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("the provider's keys are valid PKCS#8")
    }

    /// Signs `claims` with this key: header `alg`, this `kid`, `typ: at+jwt`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("signing works")
    }
}

/// The provider's signing keys.
#[derive(Clone, Debug, Deserialize)]
pub struct TestSigningKeys {
    pub rs256: TestSigningKey,
    pub es256: TestSigningKey,
    pub eddsa: TestSigningKey,
}

#[derive(Deserialize)]
struct Ready {
    issuer: String,
    token_endpoint: String,
    port: u16,
}

/// A running `oidc-provider`. Killed on drop.
pub struct OidcTestProvider {
    child: Child,
    issuer: String,
    token_endpoint: String,
    port: u16,
    options: OidcTestOptions,
    keys: TestSigningKeys,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for OidcTestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcTestProvider")
            .field("issuer", &self.issuer)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl OidcTestProvider {
    /// Whether `node` can be run.
    pub fn node_available() -> bool {
        Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a provider with [`OidcTestOptions::default`].
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(OidcTestOptions::default())
    }

    /// Starts a provider, or returns `None` after printing why the test is skipped when `node`
    /// is missing (unless `VIGIL_TEST_REQUIRE_NODE` is set, then it panics). Panics on any
    /// other failure: a broken harness must not pass as a skipped test.
    pub fn start_or_skip(test_name: &str) -> Option<Self> {
        Self::start_with_or_skip(test_name, OidcTestOptions::default())
    }

    /// [`start_or_skip`](Self::start_or_skip) with options.
    pub fn start_with_or_skip(test_name: &str, options: OidcTestOptions) -> Option<Self> {
        match Self::start_with(options) {
            Ok(p) => Some(p),
            Err(TestkitError::NodeMissing)
                if std::env::var_os("VIGIL_TEST_REQUIRE_NODE").is_none() =>
            {
                eprintln!(
                    "SKIPPED {test_name}: `node` was not found on PATH; install Node.js >= 20.19 and npm to run the real OIDC provider tests"
                );
                None
            }
            Err(e) => panic!("cannot start the OIDC test provider for {test_name}: {e}"),
        }
    }

    /// Starts a provider.
    pub fn start_with(options: OidcTestOptions) -> Result<Self, TestkitError> {
        if options.clients.is_empty() {
            return Err(failed("options", "at least one client is needed"));
        }
        if !Self::node_available() {
            return Err(TestkitError::NodeMissing);
        }
        let dir = provider_dir();
        ensure_node_modules(&dir)?;

        let tmp = tempfile::Builder::new()
            .prefix("vigil-oidc-test-")
            .tempdir()
            .map_err(|e| failed("creating a temporary directory", e))?;
        let out = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg("keygen")
            .arg(tmp.path())
            .output()
            .map_err(|e| failed("running `node server.mjs keygen`", e))?;
        if !out.status.success() {
            return Err(failed(
                "generating keys",
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        let keys: TestSigningKeys = serde_json::from_slice(
            &std::fs::read(tmp.path().join("keys.json"))
                .map_err(|e| failed("reading keys.json", e))?,
        )
        .map_err(|e| failed("parsing keys.json", e))?;

        let clients: Vec<Value> = options
            .clients
            .iter()
            .map(|c| json!({"client_id": c.client_id, "client_secret": c.client_secret}))
            .collect();
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_JWKS_FILE", tmp.path().join("jwks.json"))
            .env("OIDC_AUDIENCE", &options.audience)
            .env("OIDC_CLIENTS", Value::Array(clients).to_string())
            .env(
                "OIDC_ACCESS_TOKEN_TTL",
                options.access_token_ttl.as_secs().max(1).to_string(),
            )
            // Its stdin is how it notices that we are gone.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("starting node server.mjs", e))?;

        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("piped");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if s.len() < 64 * 1024 {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        {
            let pipe = child.stdout.take().expect("piped");
            std::thread::spawn(move || {
                let mut lines = BufReader::new(pipe).lines();
                // The readiness line is the first JSON object with an issuer; skip anything a
                // dependency might print before it.
                let ready = lines
                    .by_ref()
                    .map_while(Result::ok)
                    .find(|l| serde_json::from_str::<Ready>(l).is_ok());
                let _ = tx.send(ready);
                // Keep draining so that the child never blocks on a full pipe.
                for _ in lines {}
            });
        }
        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(line)) => serde_json::from_str::<Ready>(&line)
                .map_err(|e| failed("reading the provider's readiness line", e)),
            Ok(_) => Err(failed(
                "starting the provider",
                "it exited before it was ready",
            )),
            Err(_) => Err(failed("starting the provider", "not ready after 60s")),
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let log = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                return Err(failed(e.to_string(), format!("provider stderr:\n{log}")));
            }
        };
        Ok(OidcTestProvider {
            child,
            issuer: ready.issuer,
            token_endpoint: ready.token_endpoint,
            port: ready.port,
            options,
            keys,
            stderr,
            _dir: tmp,
        })
    }

    /// `http://127.0.0.1:PORT`, exactly as in the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `aud` of tokens for the default resource.
    pub fn audience(&self) -> &str {
        &self.options.audience
    }

    /// The registered clients; the first is the default.
    pub fn clients(&self) -> &[TestClient] {
        &self.options.clients
    }

    /// The provider's signing keys, private halves included.
    pub fn keys(&self) -> &TestSigningKeys {
        &self.keys
    }

    /// What the provider wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A provider configuration that trusts this provider: its issuer and audience,
    /// `allow_insecure_http` (it is on loopback), and every other setting at its default
    /// (`identity_claim = "sub"`, which for client-credentials tokens is the client id).
    pub fn provider_config(&self, name: &str) -> OidcProviderConfig {
        let mut c = OidcProviderConfig::new(name, &self.issuer, &self.options.audience);
        c.allow_insecure_http = true;
        c
    }

    /// A client-credentials access token of the first client, for the default resource
    /// (`aud` = [`audience`](Self::audience), signed RS256).
    pub async fn client_credentials_token(&self) -> Result<String, TestkitError> {
        let c = &self.options.clients[0];
        self.token_for(&c.client_id, None).await
    }

    /// A client-credentials access token of the client `client_id`. `resource` picks what is
    /// issued (see server.mjs): `None` or [`DEFAULT_RESOURCE`] → `aud` = the audience, RS256;
    /// `urn:vigil:gateway:ES256` (or `:EdDSA`, `:RS256`) → same audience, that algorithm; any
    /// other absolute URI → `aud` = that URI.
    pub async fn token_for(
        &self,
        client_id: &str,
        resource: Option<&str>,
    ) -> Result<String, TestkitError> {
        let client = self
            .options
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .ok_or_else(|| failed("token request", format!("no client {client_id:?}")))?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let resp = reqwest::Client::new()
            .post(&self.token_endpoint)
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| failed("token request", e))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| failed("token response", e))?;
        if !status.is_success() {
            return Err(failed(
                "token request",
                format!("HTTP {status}: {body}\nprovider stderr:\n{}", self.stderr()),
            ));
        }
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| failed("token response", "no access_token"))
    }

    /// The claims the provider itself puts in a client-credentials token for `client_id`, with
    /// `exp` five minutes ahead: a starting point for forged tokens.
    pub fn claims_for(&self, client_id: &str) -> Value {
        let now = unix_now();
        json!({
            "jti": format!("forged-{now}"),
            "sub": client_id,
            "client_id": client_id,
            "iss": self.issuer,
            "aud": self.options.audience,
            "iat": now,
            "exp": now + 300,
        })
    }
}

impl Drop for OidcTestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An unsigned token (`alg: none`) with these claims.
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// An HS256 token whose HMAC key is `secret`, with a `kid` header (the algorithm-confusion
/// forgery: `secret` is a public key PEM).
pub fn hmac_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("hmac signs")
}

/// Where server.mjs is.
pub fn provider_dir() -> PathBuf {
    match std::env::var_os("VIGIL_OIDC_PROVIDER_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testsupport/oidc-provider"),
    }
}

/// Installs the provider's npm packages if they are missing: once per process, and under a
/// lock directory across processes.
fn ensure_node_modules(dir: &Path) -> Result<(), TestkitError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| install(dir).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| failed("installing the provider's npm packages", e))
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/oidc-provider/package.json")
        .is_file()
}

fn install(dir: &Path) -> Result<(), TestkitError> {
    if installed(dir) {
        return Ok(());
    }
    let lock = dir.join(".npm-install.lock");
    let started = Instant::now();
    // mkdir is atomic: whoever creates the directory installs, the others wait for it.
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if installed(dir) {
                    return Ok(());
                }
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > NPM_TIMEOUT);
                if stale || started.elapsed() > NPM_TIMEOUT {
                    let _ = std::fs::remove_dir(&lock);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(failed(format!("creating {}", lock.display()), e)),
        }
    }
    let result = (|| {
        if installed(dir) {
            return Ok(());
        }
        let sub = if dir.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        let out = Command::new("npm")
            .args([sub, "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .output()
            .map_err(|e| failed(format!("running `npm {sub}` (is npm installed?)"), e))?;
        if !out.status.success() {
            return Err(failed(
                format!("`npm {sub}` in {}", dir.display()),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&lock);
    result
}
