//! OIDC validation with locally generated keys served by a minimal provider on loopback: every
//! rejection reason, RS256/ES256/EdDSA acceptance, key rotation and refresh rate-limiting.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{claims, now, with, LocalKey, MemStore, MockIdp, AUDIENCE};
use vigil_core::event::AuthFailureReason as R;
use vigil_core::{AuthMethod, IdentityKind, Principal};
use vigil_identity::{AuthRejection, Authenticator, IdentityConfig, OidcProviderConfig};

fn authenticator(providers: Vec<OidcProviderConfig>, identities: &[&str]) -> Authenticator {
    Authenticator::new(
        Arc::new(MemStore::default()),
        identities
            .iter()
            .map(|n| IdentityConfig::machine(*n))
            .collect(),
        providers,
    )
    .unwrap()
}

/// Authenticates and expects a refusal; checks that the refusal leaks neither the token nor
/// claim values other than iss/sub.
async fn refused(auth: &Authenticator, user: &str, token: &str) -> AuthRejection {
    let r = auth
        .authenticate(user, token)
        .await
        .expect_err("the token must be refused");
    for text in [&r.detail, &r.client_message(), &r.to_string()] {
        assert!(!text.contains(token), "token leaked: {text}");
        assert!(!text.contains("jti-marker-7f3a"), "claim leaked: {text}");
        let sig = token.rsplit('.').next().unwrap();
        assert!(
            sig.len() < 8 || !text.contains(sig),
            "signature leaked: {text}"
        );
    }
    r
}

async fn accepted(auth: &Authenticator, user: &str, token: &str) -> Arc<Principal> {
    match auth.authenticate(user, token).await {
        Ok(p) => p,
        Err(r) => panic!("refused: {r}"),
    }
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa() {
    let (rsa, ec, ed) = (
        LocalKey::rsa(0, "r1"),
        LocalKey::ec_p256("e1"),
        LocalKey::ed25519("d1"),
    );
    let idp = MockIdp::start(&[&rsa, &ec, &ed]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    for key in [&rsa, &ec, &ed] {
        let p = accepted(&auth, "etl", &key.sign(&claims(&idp.issuer, "etl"))).await;
        assert_eq!(
            *p,
            Principal {
                name: "etl".into(),
                kind: IdentityKind::Machine,
                auth_method: AuthMethod::Oidc,
                issuer: Some(idp.issuer.clone()),
                subject: Some("etl".into()),
                credential_id: None,
            },
            "{:?}",
            key.alg
        );
    }
    // Discovery and keys were fetched once for all three.
    assert_eq!(idp.jwks_hits(), 1);
    assert_eq!(idp.state.lock().discovery_hits, 1);
}

#[tokio::test]
async fn audience_may_be_a_list_and_a_token_without_kid_finds_its_key() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let list = with(
        claims(&idp.issuer, "etl"),
        "aud",
        json!(["other", AUDIENCE]),
    );
    accepted(&auth, "etl", &ec.sign(&list)).await;
    let no_kid = ec.sign_as(Algorithm::ES256, None, &claims(&idp.issuer, "etl"));
    accepted(&auth, "etl", &no_kid).await;
}

#[tokio::test]
async fn alg_none_is_refused_as_such() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    for alg in ["none", "None", "NONE"] {
        let header = support_b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let payload = support_b64(&claims(&idp.issuer, "etl").to_string());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            let r = refused(&auth, "etl", &token).await;
            assert_eq!(r.reason, R::JwtAlgNone, "{alg}");
            // Issuer and subject are recorded for the audit trail even so.
            assert_eq!(r.issuer.as_deref(), Some(idp.issuer.as_str()));
            assert_eq!(r.subject.as_deref(), Some("etl"));
        }
    }
    // Nothing was fetched for it.
    assert_eq!(idp.jwks_hits(), 0);
}

fn support_b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let rsa = LocalKey::rsa(0, "r1");
    let idp = MockIdp::start(&[&rsa]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let pem = rsa.public_pem.clone().unwrap();
    let jwk_json = rsa.jwk.to_string();
    for (alg, secret) in [
        (Algorithm::HS256, pem.as_bytes()),
        (Algorithm::HS384, pem.as_bytes()),
        (Algorithm::HS512, pem.as_bytes()),
        (Algorithm::HS256, jwk_json.as_bytes()),
    ] {
        let mut header = Header::new(alg);
        header.kid = Some("r1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(&idp.issuer, "etl"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        let r = refused(&auth, "etl", &token).await;
        assert_eq!(r.reason, R::JwtAlgorithmNotAllowed, "{alg:?}");
        assert!(r.detail.contains("HMAC"), "{}", r.detail);
    }
}

#[tokio::test]
async fn algorithms_outside_the_allowlist_or_the_key_type_are_refused() {
    let rsa = LocalKey::rsa(0, "r1");
    let ec = LocalKey::ec_p256("e1");
    let p384 = LocalKey::ec_p384("p384");
    let idp = MockIdp::start(&[&rsa, &ec, &p384]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let c = claims(&idp.issuer, "etl");

    // PS256 fits the RSA key, but is not in the default allowlist; ES384 likewise.
    let r = refused(&auth, "etl", &rsa.sign_as(Algorithm::PS256, Some("r1"), &c)).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed);
    assert!(r.detail.contains("PS256"), "{}", r.detail);
    let r = refused(&auth, "etl", &p384.sign(&c)).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed);

    // An ES256 signature that names the RSA key: the key may not verify ES256.
    let r = refused(&auth, "etl", &ec.sign_as(Algorithm::ES256, Some("r1"), &c)).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed);
    assert!(r.detail.contains("RSA"), "{}", r.detail);
    // And an RS256 signature naming the EC key.
    let r = refused(&auth, "etl", &rsa.sign_as(Algorithm::RS256, Some("e1"), &c)).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed);

    // Unknown algorithm names.
    let token = format!(
        "{}.{}.c2ln",
        support_b64(r#"{"alg":"Ed448","kid":"e1"}"#),
        support_b64(&c.to_string())
    );
    assert_eq!(
        refused(&auth, "etl", &token).await.reason,
        R::JwtAlgorithmNotAllowed
    );
}

#[tokio::test]
async fn a_key_that_pins_its_alg_verifies_only_that_alg() {
    let rsa = LocalKey::rsa(0, "r1");
    let idp = MockIdp::start(&[]);
    let mut jwk = rsa.jwk.clone();
    jwk["alg"] = json!("RS256");
    idp.state.lock().jwks = json!({"keys": [jwk]});
    let mut config = idp.config("local");
    config.algorithms = vec!["RS256".into(), "PS256".into()];
    let auth = authenticator(vec![config], &["etl"]);
    let c = claims(&idp.issuer, "etl");
    accepted(&auth, "etl", &rsa.sign(&c)).await;
    let r = refused(&auth, "etl", &rsa.sign_as(Algorithm::PS256, Some("r1"), &c)).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed);
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let (a, b) = (LocalKey::rsa(0, "r1"), LocalKey::rsa(1, "r1"));
    let (ea, eb) = (LocalKey::ec_p256("e1"), LocalKey::ec_p256("e1"));
    let (da, db) = (LocalKey::ed25519("d1"), LocalKey::ed25519("d1"));
    let idp = MockIdp::start(&[&a, &ea, &da]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let c = claims(&idp.issuer, "etl");
    // Same kid, other private key.
    for impostor in [&b, &eb, &db] {
        let r = refused(&auth, "etl", &impostor.sign(&c)).await;
        assert_eq!(r.reason, R::JwtBadSignature, "{:?}", impostor.alg);
    }
    // A genuine token whose payload was changed.
    let genuine = a.sign(&c);
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = support_b64(&with(c.clone(), "sub", json!("admin")).to_string());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let r = refused(&auth, "admin", &tampered).await;
    assert_eq!(r.reason, R::JwtBadSignature);
    assert_eq!(r.subject.as_deref(), Some("admin"));
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let c = claims(&idp.issuer, "etl");

    let r = refused(
        &auth,
        "etl",
        &ec.sign(&with(c.clone(), "exp", json!(now() - 120))),
    )
    .await;
    assert_eq!(r.reason, R::JwtExpired);
    assert_eq!(
        r.client_message(),
        "authentication failed (jwt_expired): the token has expired; request a new one"
    );
    // Within the 30 s leeway.
    accepted(
        &auth,
        "etl",
        &ec.sign(&with(c.clone(), "exp", json!(now() - 10))),
    )
    .await;

    let r = refused(
        &auth,
        "etl",
        &ec.sign(&with(c.clone(), "nbf", json!(now() + 120))),
    )
    .await;
    assert_eq!(r.reason, R::JwtNotYetValid);
    accepted(
        &auth,
        "etl",
        &ec.sign(&with(c.clone(), "nbf", json!(now() + 10))),
    )
    .await;
    accepted(
        &auth,
        "etl",
        &ec.sign(&with(c.clone(), "nbf", json!(now() - 10))),
    )
    .await;
    // An nbf that cannot be read is not skipped.
    let unreadable = with(c.clone(), "nbf", json!("2099-01-01"));
    let r = refused(&auth, "etl", &ec.sign(&unreadable)).await;
    assert_eq!(r.reason, R::JwtMalformed);

    // exp is required, and must be a number.
    let r = refused(&auth, "etl", &ec.sign(&with(c.clone(), "exp", Value::Null))).await;
    assert_eq!(r.reason, R::JwtMalformed);
    assert!(r.detail.contains("`exp`"), "{}", r.detail);
    let r = refused(&auth, "etl", &ec.sign(&with(c, "exp", json!("tomorrow")))).await;
    assert_eq!(r.reason, R::JwtMalformed);
}

#[tokio::test]
async fn audience_and_issuer_are_checked() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let c = claims(&idp.issuer, "etl");

    for aud in [json!("other"), json!(["other", "third"]), json!([])] {
        let r = refused(&auth, "etl", &ec.sign(&with(c.clone(), "aud", aud.clone()))).await;
        assert_eq!(r.reason, R::JwtWrongAudience, "{aud}");
    }
    let r = refused(&auth, "etl", &ec.sign(&with(c.clone(), "aud", Value::Null))).await;
    assert_eq!(r.reason, R::JwtMalformed);

    // Exact match only: another host, or the same one with a trailing slash.
    for iss in [
        "https://evil.example".to_string(),
        format!("{}/", idp.issuer),
    ] {
        let r = refused(&auth, "etl", &ec.sign(&with(c.clone(), "iss", json!(iss)))).await;
        assert_eq!(r.reason, R::JwtWrongIssuer, "{iss}");
        assert_eq!(r.issuer.as_deref(), Some(iss.as_str()));
    }
    let r = refused(&auth, "etl", &ec.sign(&with(c, "iss", Value::Null))).await;
    assert_eq!(r.reason, R::JwtMalformed);
    // Routing never fetched from the unknown issuers.
    assert_eq!(idp.state.lock().discovery_hits, 1);
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let c = claims(&idp.issuer, "etl");
    let header = support_b64(r#"{"alg":"ES256","kid":"e1"}"#);
    let cases = [
        format!("{header}.{}.c2ln", support_b64("not json")),
        format!("{header}.{}.c2ln", support_b64("[1,2]")),
        format!(
            "{}.{}.c2ln",
            support_b64("not json"),
            support_b64(&c.to_string())
        ),
        format!(
            "{}.{}.c2ln",
            support_b64(r#"{"alg":"ES256","kid":"e1","crit":["b64"]}"#),
            support_b64(&c.to_string())
        ),
        format!("{header}.{}.c2ln", "A".repeat(20_000)),
    ];
    for token in &cases {
        assert_eq!(
            refused(&auth, "etl", token).await.reason,
            R::JwtMalformed,
            "{token:.60}"
        );
    }
}

#[tokio::test]
async fn identity_comes_from_the_configured_claim_and_map() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let mut by_client = idp.config("local");
    by_client.identity_claim = "client_id".into();
    by_client.identity_map = Some(BTreeMap::from([("ci-123".to_string(), "etl".to_string())]));
    let auth = authenticator(vec![by_client], &["etl"]);
    let c = with(
        claims(&idp.issuer, "opaque-sub-1"),
        "client_id",
        json!("ci-123"),
    );

    let p = accepted(&auth, "etl", &ec.sign(&c)).await;
    assert_eq!(p.name, "etl");
    assert_eq!(p.subject.as_deref(), Some("opaque-sub-1"));

    // The claim maps to nothing.
    let unmapped = with(c.clone(), "client_id", json!("ci-999"));
    let r = refused(&auth, "etl", &ec.sign(&unmapped)).await;
    assert_eq!(r.reason, R::JwtNoIdentity);
    assert!(!r.detail.contains("ci-999"), "{}", r.detail);
    // The claim is missing, or not a string.
    for v in [Value::Null, json!(42), json!("")] {
        let r = refused(&auth, "etl", &ec.sign(&with(c.clone(), "client_id", v))).await;
        assert_eq!(r.reason, R::JwtNoIdentity);
    }
}

#[tokio::test]
async fn the_token_must_be_the_users_and_the_identity_declared() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl", "reporting"]);

    // etl's token, presented as reporting: refused without naming etl.
    let r = refused(&auth, "reporting", &ec.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::IdentityMismatch);
    assert_eq!(
        r.detail,
        "the token does not belong to identity \"reporting\""
    );
    assert!(!r.client_message().contains("etl"));

    // A valid token for an identity nobody declared.
    let r = refused(&auth, "ghost", &ec.sign(&claims(&idp.issuer, "ghost"))).await;
    assert_eq!(r.reason, R::UnknownIdentity);
}

#[tokio::test]
async fn a_machine_provider_cannot_vouch_for_a_human_identity() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let mut ana = IdentityConfig::machine("ana");
    ana.kind = IdentityKind::Human;
    let auth = Authenticator::new(
        Arc::new(MemStore::default()),
        vec![ana],
        vec![idp.config("machines")],
    )
    .unwrap();
    let r = refused(&auth, "ana", &ec.sign(&claims(&idp.issuer, "ana"))).await;
    assert_eq!(r.reason, R::IdentityMismatch);

    let mut humans = idp.config("humans");
    humans.kind = IdentityKind::Human;
    let mut ana = IdentityConfig::machine("ana");
    ana.kind = IdentityKind::Human;
    let auth = Authenticator::new(Arc::new(MemStore::default()), vec![ana], vec![humans]).unwrap();
    let p = accepted(&auth, "ana", &ec.sign(&claims(&idp.issuer, "ana"))).await;
    assert_eq!(p.kind, IdentityKind::Human);
}

#[tokio::test]
async fn a_bearer_jwt_alone_is_its_claimed_identity_with_the_same_checks() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let token = ec.sign(&claims(&idp.issuer, "etl"));
    let p = auth.authenticate_bearer(&token).await.unwrap();
    assert_eq!(p, accepted(&auth, "etl", &token).await);
    assert_eq!(p.auth_method, AuthMethod::Oidc);

    let r = auth
        .authenticate_bearer(&ec.sign(&claims(&idp.issuer, "ghost")))
        .await
        .unwrap_err();
    assert_eq!(r.reason, R::UnknownIdentity);
    // A machine provider does not vouch for a human identity, whoever asks.
    let mut ana = IdentityConfig::machine("ana");
    ana.kind = IdentityKind::Human;
    let auth = Authenticator::new(
        Arc::new(MemStore::default()),
        vec![ana],
        vec![idp.config("machines")],
    )
    .unwrap();
    let r = auth
        .authenticate_bearer(&ec.sign(&claims(&idp.issuer, "ana")))
        .await
        .unwrap_err();
    assert_eq!(r.reason, R::IdentityMismatch);
}

#[tokio::test]
async fn unknown_keys_trigger_one_refresh_then_are_refused() {
    let ec = LocalKey::ec_p256("e1");
    let stranger = LocalKey::ec_p256("not-published");
    let idp = MockIdp::start(&[&ec]);
    let mut config = idp.config("local");
    config.jwks_min_refresh_interval = Duration::ZERO;
    let auth = authenticator(vec![config], &["etl"]);
    let r = refused(&auth, "etl", &stranger.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::JwtUnknownKey);
    assert!(r.detail.contains("not-published"), "{}", r.detail);
    // The first fetch, then one refresh for the unknown kid.
    assert_eq!(idp.jwks_hits(), 2);

    // No kid and no key of that type.
    let ed = LocalKey::ed25519("d1");
    let r = refused(
        &auth,
        "etl",
        &ed.sign_as(Algorithm::EdDSA, None, &claims(&idp.issuer, "etl")),
    )
    .await;
    assert_eq!(r.reason, R::JwtUnknownKey);
}

#[tokio::test]
async fn rotated_keys_are_picked_up() {
    let old = LocalKey::rsa(0, "2024");
    let new = LocalKey::ec_p256("2025");
    let idp = MockIdp::start(&[&old]);
    let mut config = idp.config("local");
    config.jwks_min_refresh_interval = Duration::from_millis(200);
    let auth = authenticator(vec![config], &["etl"]);
    assert_eq!(auth.warm_up().await[0].result, Ok(1));
    accepted(&auth, "etl", &old.sign(&claims(&idp.issuer, "etl"))).await;

    // The provider rotates: tokens signed by the new key arrive.
    idp.set_keys(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    accepted(&auth, "etl", &new.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(idp.jwks_hits(), 2);
    // The old key still works while the provider publishes it.
    accepted(&auth, "etl", &old.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_refresh() {
    let new = LocalKey::ec_p256("fresh");
    let idp = MockIdp::start(&[]);
    let mut config = idp.config("local");
    config.jwks_min_refresh_interval = Duration::from_millis(200);
    let auth = Arc::new(authenticator(vec![config], &["etl"]));
    auth.warm_up().await;
    assert_eq!(idp.jwks_hits(), 1);
    idp.set_keys(&[&new]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let token = new.sign(&claims(&idp.issuer, "etl"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (auth, token) = (auth.clone(), token.clone());
        tasks.spawn(async move { auth.authenticate("etl", &token).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().is_ok());
    }
    assert_eq!(idp.jwks_hits(), 2, "one refresh for all sixteen");
}

#[tokio::test]
async fn refreshes_are_rate_limited() {
    // The interval is long enough that the bursts below fit in it even on a loaded machine;
    // tokens are made up front so that only verification runs inside it.
    const INTERVAL: Duration = Duration::from_millis(1500);
    let ec = LocalKey::ec_p256("e1");
    let later = LocalKey::ec_p256("later");
    let idp = MockIdp::start(&[&ec]);
    let made_up: Vec<String> = (0..20)
        .map(|i| LocalKey::ec_p256(&format!("made-up-{i}")).sign(&claims(&idp.issuer, "etl")))
        .collect();
    let later_token = later.sign(&claims(&idp.issuer, "etl"));
    let mut config = idp.config("local");
    config.jwks_min_refresh_interval = INTERVAL;
    let auth = authenticator(vec![config], &["etl"]);
    auth.warm_up().await;
    assert_eq!(idp.jwks_hits(), 1);

    // A storm of made-up kids right after a fetch: no fetch at all.
    for token in &made_up {
        assert_eq!(refused(&auth, "etl", token).await.reason, R::JwtUnknownKey);
    }
    assert_eq!(idp.jwks_hits(), 1);

    // The provider publishes a new key: refused until the interval has passed, then picked
    // up with one fetch, after which unknown kids cause no fetch again.
    idp.set_keys(&[&ec, &later]);
    let early = refused(&auth, "etl", &later_token).await;
    assert_eq!(early.reason, R::JwtUnknownKey);
    assert_eq!(idp.jwks_hits(), 1);
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    accepted(&auth, "etl", &later_token).await;
    assert_eq!(idp.jwks_hits(), 2);
    for token in &made_up {
        refused(&auth, "etl", token).await;
    }
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn old_keys_are_dropped_after_max_age_and_kept_when_the_provider_is_down() {
    let a = LocalKey::ec_p256("a");
    let b = LocalKey::ec_p256("b");
    let idp = MockIdp::start(&[&a]);
    let mut config = idp.config("local");
    config.jwks_min_refresh_interval = Duration::ZERO;
    config.jwks_max_age = Duration::from_millis(100);
    let auth = authenticator(vec![config], &["etl"]);
    accepted(&auth, "etl", &a.sign(&claims(&idp.issuer, "etl"))).await;

    // The provider goes down: cached keys keep working, past their age.
    idp.state.lock().down = true;
    tokio::time::sleep(Duration::from_millis(150)).await;
    accepted(&auth, "etl", &a.sign(&claims(&idp.issuer, "etl"))).await;
    // A key it never published cannot be checked while it is down.
    let r = refused(&auth, "etl", &b.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::ProviderUnavailable);

    // Back up, having withdrawn key a: once the cache is old, a stops working.
    idp.state.lock().down = false;
    idp.set_keys(&[&b]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = refused(&auth, "etl", &a.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::JwtUnknownKey);
    accepted(&auth, "etl", &b.sign(&claims(&idp.issuer, "etl"))).await;
}

#[tokio::test]
async fn unreachable_or_inconsistent_providers_are_unavailable() {
    let ec = LocalKey::ec_p256("e1");

    // Nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = format!("http://127.0.0.1:{port}");
    let mut config = OidcProviderConfig::new("gone", &issuer, AUDIENCE);
    config.allow_insecure_http = true;
    let auth = authenticator(vec![config], &["etl"]);
    let status = auth.warm_up().await;
    assert!(status[0].result.is_err(), "{status:?}");
    let r = refused(&auth, "etl", &ec.sign(&claims(&issuer, "etl"))).await;
    assert_eq!(r.reason, R::ProviderUnavailable);
    assert_eq!(
        r.client_message(),
        "authentication failed (provider_unavailable): the identity provider could not be reached to check the token; retry later"
    );

    // The discovery document is about another issuer.
    let idp = MockIdp::start(&[&ec]);
    idp.state.lock().discovery_issuer = Some("https://impostor.example".into());
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let r = refused(&auth, "etl", &ec.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::ProviderUnavailable);
    assert!(r.detail.contains("impostor.example"), "{}", r.detail);

    // The provider answers errors.
    let idp = MockIdp::start(&[&ec]);
    idp.state.lock().down = true;
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let r = refused(&auth, "etl", &ec.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::ProviderUnavailable);
    assert!(r.detail.contains("503"), "{}", r.detail);
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_urls() {
    let ec = LocalKey::ec_p256("e1");
    let idp = MockIdp::start(&[&ec]);
    // To the same loopback server: fine.
    idp.state.lock().jwks_redirect = Some(format!("{}/jwks-real", idp.issuer));
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    accepted(&auth, "etl", &ec.sign(&claims(&idp.issuer, "etl"))).await;

    // Off the host over plain http: refused before any request is made.
    let idp = MockIdp::start(&[&ec]);
    idp.state.lock().jwks_redirect = Some("http://jwks.example.invalid/keys".into());
    let auth = authenticator(vec![idp.config("local")], &["etl"]);
    let r = refused(&auth, "etl", &ec.sign(&claims(&idp.issuer, "etl"))).await;
    assert_eq!(r.reason, R::ProviderUnavailable);
    assert!(r.detail.contains("redirect"), "{}", r.detail);
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_ignored() {
    let idp = MockIdp::start(&[]);
    idp.state.lock().jwks =
        json!({"keys": [{"kty": "oct", "k": support_b64("shared"), "kid": "h"}]});
    let mut config = idp.config("local");
    config.algorithms = vec!["RS256".into()];
    let auth = authenticator(vec![config], &["etl"]);
    let status = auth.warm_up().await;
    assert_eq!(status[0].result, Ok(0));
}

#[tokio::test]
async fn tokens_are_routed_to_their_issuers_provider() {
    let (k1, k2) = (LocalKey::ec_p256("k"), LocalKey::ed25519("k"));
    let (idp1, idp2) = (MockIdp::start(&[&k1]), MockIdp::start(&[&k2]));
    let auth = authenticator(vec![idp1.config("one"), idp2.config("two")], &["etl"]);
    accepted(&auth, "etl", &k1.sign(&claims(&idp1.issuer, "etl"))).await;
    accepted(&auth, "etl", &k2.sign(&claims(&idp2.issuer, "etl"))).await;
    // Provider one's key cannot vouch for provider two's issuer.
    let r = refused(&auth, "etl", &k1.sign(&claims(&idp2.issuer, "etl"))).await;
    assert_eq!(r.reason, R::JwtAlgorithmNotAllowed, "{}", r.detail);
    let k1b = LocalKey::ec_p256("k");
    let idp3 = MockIdp::start(&[&k1b]);
    let auth = authenticator(vec![idp1.config("one"), idp3.config("three")], &["etl"]);
    let r = refused(&auth, "etl", &k1.sign(&claims(&idp3.issuer, "etl"))).await;
    assert_eq!(r.reason, R::JwtBadSignature);
}

#[tokio::test]
async fn identity_map_must_name_declared_identities() {
    let idp = MockIdp::start(&[]);
    let mut config = idp.config("local");
    config.identity_map = Some(BTreeMap::from([("c".to_string(), "nobody".to_string())]));
    let err = Authenticator::validate(&[], std::slice::from_ref(&config)).unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    let err = Authenticator::new(Arc::new(MemStore::default()), vec![], vec![config]).unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");

    let twice = [
        IdentityConfig::machine("etl"),
        IdentityConfig::machine("etl"),
    ];
    let err = Authenticator::validate(&twice, &[]).unwrap_err();
    assert_eq!(err.to_string(), "identity \"etl\" is declared twice");
    assert!(Authenticator::validate(&twice[..1], &[idp.config("local")]).is_ok());
}
