//! Against a real OpenID Provider (`oidc-provider` on Node.js, see `vigil_identity::testkit`):
//! its client-credentials access tokens are accepted, and tokens forged with its own private
//! keys are refused for the right reason. Skipped, with a message, when `node` is missing.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::{with, LocalKey, MemStore};
use vigil_core::event::AuthFailureReason as R;
use vigil_core::{AuthMethod, IdentityKind};
use vigil_identity::testkit::{
    hmac_token, unix_now, unsigned_token, OidcTestOptions, OidcTestProvider, TestClient,
    DEFAULT_RESOURCE,
};
use vigil_identity::{AuthRejection, Authenticator, IdentityConfig, OidcProviderConfig};

/// Trusts `idp`, mapping its client `ci-runner` to identity `etl` by `client_id`.
fn mapped_authenticator(idp: &OidcTestProvider) -> Authenticator {
    let mut config = idp.provider_config("test-idp");
    config.identity_claim = "client_id".into();
    config.identity_map = Some(BTreeMap::from([(
        "ci-runner".to_string(),
        "etl".to_string(),
    )]));
    authenticator(config, &["etl"])
}

fn authenticator(config: OidcProviderConfig, identities: &[&str]) -> Authenticator {
    Authenticator::new(
        Arc::new(MemStore::default()),
        identities
            .iter()
            .map(|n| IdentityConfig::machine(*n))
            .collect(),
        vec![config],
    )
    .unwrap()
}

fn options() -> OidcTestOptions {
    OidcTestOptions {
        clients: vec![
            TestClient::new("ci-runner"),
            TestClient::new("other-service"),
        ],
        ..OidcTestOptions::default()
    }
}

async fn refused(auth: &Authenticator, user: &str, token: &str) -> AuthRejection {
    let r = auth
        .authenticate(user, token)
        .await
        .expect_err("the token must be refused");
    assert!(!r.detail.contains(token) && !r.client_message().contains(token));
    r
}

#[tokio::test]
async fn client_credentials_tokens_are_accepted_and_mapped() {
    let Some(idp) =
        OidcTestProvider::start_with_or_skip("client_credentials_tokens_are_accepted", options())
    else {
        return;
    };
    let auth = mapped_authenticator(&idp);
    let status = auth.warm_up().await;
    assert_eq!(
        status[0].result,
        Ok(3),
        "RS256, ES256 and EdDSA keys: {status:?}"
    );

    // The provider's default: RS256.
    let token = idp.token_for("ci-runner", None).await.unwrap();
    let p = auth.authenticate("etl", &token).await.unwrap_or_else(|r| {
        panic!("refused: {r}\nprovider stderr:\n{}", idp.stderr());
    });
    assert_eq!(p.name, "etl");
    assert_eq!(p.kind, IdentityKind::Machine);
    assert_eq!(p.auth_method, AuthMethod::Oidc);
    assert_eq!(p.issuer.as_deref(), Some(idp.issuer()));
    assert_eq!(p.subject.as_deref(), Some("ci-runner"));
    assert_eq!(p.credential_id, None);

    // The same provider signing with ES256 and EdDSA.
    for alg in ["ES256", "EdDSA"] {
        let resource = format!("{DEFAULT_RESOURCE}:{alg}");
        let token = idp.token_for("ci-runner", Some(&resource)).await.unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let p = auth.authenticate("etl", &token).await.unwrap();
        assert_eq!(p.name, "etl");
    }

    // Without a map, the identity is the `sub` (the client id).
    let direct = authenticator(idp.provider_config("test-idp"), &["ci-runner"]);
    let token = idp.client_credentials_token().await.unwrap();
    assert_eq!(
        direct.authenticate("ci-runner", &token).await.unwrap().name,
        "ci-runner"
    );

    // Another client's real token: not in the map.
    let other = idp.token_for("other-service", None).await.unwrap();
    assert_eq!(refused(&auth, "etl", &other).await.reason, R::JwtNoIdentity);
    // A real token for another resource server (its aud is that URI).
    let elsewhere = idp
        .token_for("ci-runner", Some("https://billing.internal/api"))
        .await
        .unwrap();
    assert_eq!(
        refused(&auth, "etl", &elsewhere).await.reason,
        R::JwtWrongAudience
    );
    // A real token presented under another user name.
    let mut config = idp.provider_config("test-idp");
    config.identity_claim = "client_id".into();
    config.identity_map = Some(BTreeMap::from([(
        "ci-runner".to_string(),
        "etl".to_string(),
    )]));
    let two = Authenticator::new(
        Arc::new(MemStore::default()),
        vec![
            IdentityConfig::machine("etl"),
            IdentityConfig::machine("reporting"),
        ],
        vec![config],
    )
    .unwrap();
    let token = idp.token_for("ci-runner", None).await.unwrap();
    let r = refused(&two, "reporting", &token).await;
    assert_eq!(r.reason, R::IdentityMismatch);
    assert!(!r.detail.contains("etl"), "{}", r.detail);
}

#[tokio::test]
async fn tokens_forged_with_the_providers_keys_are_refused_for_the_right_reason() {
    let Some(idp) = OidcTestProvider::start_with_or_skip("forged_tokens_are_refused", options())
    else {
        return;
    };
    let auth = mapped_authenticator(&idp);
    let keys = idp.keys().clone();
    let good = idp.claims_for("ci-runner");

    // Control: a token forged with the provider's real key and sound claims passes, so every
    // refusal below is about the one thing that was changed.
    for key in [&keys.rs256, &keys.es256, &keys.eddsa] {
        let p = auth.authenticate("etl", &key.sign(&good)).await;
        assert!(p.is_ok(), "{}: {:?}", key.alg, p.err());
    }

    let now = unix_now();
    let cases: Vec<(&str, String, R)> = vec![
        (
            "expired",
            keys.rs256
                .sign(&with(good.clone(), "exp", json!(now - 3600))),
            R::JwtExpired,
        ),
        (
            "not yet valid",
            keys.es256
                .sign(&with(good.clone(), "nbf", json!(now + 3600))),
            R::JwtNotYetValid,
        ),
        (
            "wrong audience",
            keys.rs256
                .sign(&with(good.clone(), "aud", json!("someone-else"))),
            R::JwtWrongAudience,
        ),
        (
            "wrong issuer",
            keys.rs256
                .sign(&with(good.clone(), "iss", json!("https://evil.example"))),
            R::JwtWrongIssuer,
        ),
        ("alg none", unsigned_token(&good), R::JwtAlgNone),
        (
            "HS256 keyed with the RSA public key (SPKI PEM)",
            hmac_token(
                keys.rs256.public_spki_pem.as_bytes(),
                &keys.rs256.kid,
                &good,
            ),
            R::JwtAlgorithmNotAllowed,
        ),
        (
            "HS256 keyed with the RSA public key (PKCS#1 PEM)",
            hmac_token(
                keys.rs256.public_pkcs1_pem.as_deref().unwrap().as_bytes(),
                &keys.rs256.kid,
                &good,
            ),
            R::JwtAlgorithmNotAllowed,
        ),
        (
            "signed by a key the provider does not publish",
            LocalKey::ec_p256("attacker-key").sign(&good),
            R::JwtUnknownKey,
        ),
        (
            "the provider's kid, another key",
            LocalKey::ec_p256(&keys.es256.kid).sign(&good),
            R::JwtBadSignature,
        ),
        (
            "ES256 naming the provider's RSA key",
            LocalKey::ec_p256(&keys.rs256.kid).sign(&good),
            R::JwtAlgorithmNotAllowed,
        ),
        (
            "no exp",
            keys.eddsa.sign(&with(good.clone(), "exp", Value::Null)),
            R::JwtMalformed,
        ),
    ];
    for (what, token, reason) in &cases {
        let r = refused(&auth, "etl", token).await;
        assert_eq!(r.reason, *reason, "{what}: {}", r.detail);
    }
}

#[tokio::test]
async fn a_provider_that_went_away_is_unavailable() {
    let Some(idp) = OidcTestProvider::start_or_skip("a_provider_that_went_away") else {
        return;
    };
    let token = idp.client_credentials_token().await.unwrap();
    let config = idp.provider_config("test-idp");
    drop(idp); // kills the process
    let auth = authenticator(config, &["vigil-test-machine"]);
    let r = refused(&auth, "vigil-test-machine", &token).await;
    assert_eq!(r.reason, R::ProviderUnavailable, "{}", r.detail);
}
