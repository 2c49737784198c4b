//! OIDC through the gateway with a real OpenID provider (npm `oidc-provider`): a machine client
//! gets a client-credentials token and connects with it; every kind of bad token is refused
//! with 28P01 and recorded.

mod support;

use serde_json::json;
use support::*;
use vigil_identity::testkit::{
    hmac_token, unix_now, unsigned_token, OidcTestProvider, DEFAULT_CLIENT_ID,
};

fn oidc_config(cfg: &mut VigilConfig, idp: &OidcTestProvider) {
    cfg.identities = vec![(DEFAULT_CLIENT_ID.into(), "connections = [\"ehr\"]".into())];
    cfg.extra = format!(
        "[[oidc_providers]]\nname = \"test-idp\"\nissuer = \"{}\"\naudience = \"{}\"\nallow_insecure_http = true\njwks_min_refresh_interval = \"1s\"\n",
        idp.issuer(),
        idp.audience()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_credentials_token_opens_a_session() {
    let Some(idp) =
        OidcTestProvider::start_or_skip("a_real_client_credentials_token_opens_a_session")
    else {
        return;
    };
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    oidc_config(&mut cfg, &idp);
    let vigil = Vigil::start(&cfg);

    let token = idp.client_credentials_token().await.unwrap();
    let (ok, out, err) = vigil.psql(DEFAULT_CLIENT_ID, &token, "SELECT current_user");
    assert!(ok, "{err}\n{}", vigil.log());
    assert_eq!(
        out, "postgres",
        "the session runs as Vigil's vaulted upstream role"
    );

    let store = cfg.store_path();
    let start = eventually("session record", || {
        records_of(&store, "SessionStarted").into_iter().next()
    });
    assert_eq!(start["identity"]["auth_method"], "oidc");
    assert_eq!(start["identity"]["issuer"], idp.issuer());
    assert_eq!(start["identity"]["subject"], DEFAULT_CLIENT_ID);
    assert_eq!(start["identity"]["kind"], "machine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_token_is_refused_and_recorded() {
    let Some(idp) =
        OidcTestProvider::start_or_skip("every_kind_of_bad_token_is_refused_and_recorded")
    else {
        return;
    };
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    oidc_config(&mut cfg, &idp);
    let vigil = Vigil::start(&cfg);
    let rsa = &idp.keys().rs256;
    let claims = idp.claims_for(DEFAULT_CLIENT_ID);
    let with = |patch: serde_json::Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let now = unix_now();
    // A key the provider never published, with a kid of its own.
    let stranger = {
        let mut k = idp.keys().es256.clone();
        k.kid = "not-published".into();
        k
    };
    let cases = [
        (
            "jwt_expired",
            rsa.sign(&with(json!({"exp": now - 3600, "iat": now - 7200}))),
        ),
        (
            "jwt_wrong_audience",
            rsa.sign(&with(json!({"aud": "someone-else"}))),
        ),
        ("jwt_wrong_issuer", {
            // Routed by issuer: a token naming another issuer finds no provider.
            rsa.sign(&with(json!({"iss": "http://127.0.0.1:1/evil"})))
        }),
        ("jwt_alg_none", unsigned_token(&claims)),
        (
            "jwt_algorithm_not_allowed",
            hmac_token(rsa.public_spki_pem.as_bytes(), &rsa.kid, &claims),
        ),
        ("jwt_unknown_key", stranger.sign(&claims)),
    ];
    for (reason, token) in &cases {
        let (ok, _, err) = vigil.psql(DEFAULT_CLIENT_ID, token, "SELECT 1");
        assert!(!ok, "{reason}: a bad token was accepted");
        assert!(err.contains("authentication failed"), "{reason}: {err}");
        let conn = vigil.conn_string(DEFAULT_CLIENT_ID, token);
        let e = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code().unwrap().code(), "28P01", "{reason}");
    }
    let store = cfg.store_path();
    let failures = eventually("AuthFailed records", || {
        let f = records_of(&store, "AuthFailed");
        (f.len() >= cases.len() * 2).then_some(f)
    });
    let reasons: Vec<String> = failures
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect();
    for (reason, _) in &cases {
        let expected = if *reason == "jwt_wrong_issuer" {
            ["jwt_wrong_issuer", "jwt_no_identity", "unknown_token"].as_slice()
        } else {
            std::slice::from_ref(reason)
        };
        assert!(
            reasons.iter().any(|r| expected.contains(&r.as_str())),
            "{reason} not recorded: {reasons:?}"
        );
    }
    // No token text in the trail.
    let trail = serde_json::to_string(&audit_records(&store)).unwrap();
    for (_, token) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(signature.is_empty() || !trail.contains(signature));
    }
}
