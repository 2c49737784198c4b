//! Service tokens through `TokenService` and the `Authenticator`, over an in-memory store.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::MemStore;
use vigil_core::event::AuthFailureReason as R;
use vigil_core::{AuthMethod, IdentityKind, Principal, Timestamp};
use vigil_identity::tokens::{self, TokenError};
use vigil_identity::{Authenticator, IdentityConfig, TokenService};
use vigil_store::TokenRecord;

fn setup(identities: &[&str]) -> (Arc<MemStore>, Authenticator) {
    let store = Arc::new(MemStore::default());
    let auth = Authenticator::new(
        store.clone(),
        identities
            .iter()
            .map(|n| IdentityConfig::machine(*n))
            .collect(),
        vec![],
    )
    .unwrap();
    (store, auth)
}

#[tokio::test]
async fn a_created_token_authenticates_its_identity() {
    let (store, auth) = setup(&["etl"]);
    let (token, record) = auth
        .tokens()
        .create(
            "etl",
            Some(Duration::from_secs(3600)),
            Some("nightly export"),
        )
        .unwrap();
    assert!(tokens::is_well_formed(&token));
    assert_eq!(record.identity, "etl");
    assert_eq!(record.label.as_deref(), Some("nightly export"));
    let expires = record.expires_at.unwrap().as_micros() - record.created_at.as_micros();
    assert_eq!(expires, 3_600_000_000);

    // Only the hash is stored.
    let stored = store.tokens.lock().clone();
    assert_eq!(stored, vec![record.clone()]);
    assert_eq!(stored[0].hash, tokens::hash(&token));
    assert!(!format!("{stored:?}").contains(&token[4..]));

    let p = auth.authenticate("etl", &token).await.unwrap();
    assert_eq!(
        *p,
        Principal {
            name: "etl".into(),
            kind: IdentityKind::Machine,
            auth_method: AuthMethod::ServiceToken,
            issuer: None,
            subject: None,
            credential_id: Some(record.id.clone()),
        }
    );
}

#[tokio::test]
async fn unknown_malformed_and_missing_tokens() {
    let (_, auth) = setup(&["etl"]);
    let (never_stored, _) = tokens::generate();
    for (secret, reason) in [
        (never_stored.as_str(), R::UnknownToken),
        ("vgt_short", R::UnknownToken),
        ("hunter2", R::UnknownToken),
        ("", R::MissingToken),
    ] {
        let r = auth.authenticate("etl", secret).await.unwrap_err();
        assert_eq!(r.reason, reason, "{secret:?}");
        if !secret.is_empty() {
            assert!(!r.detail.contains(secret) && !r.client_message().contains(secret));
        }
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_told_apart() {
    let (store, auth) = setup(&["etl"]);
    let svc = auth.tokens();

    // Expired: a record whose expiry has passed.
    let (expired, hash) = tokens::generate();
    let past = Timestamp::from_micros(Timestamp::now().as_micros() - 1_000_000);
    store.tokens.lock().push(TokenRecord {
        id: "t-expired".into(),
        identity: "etl".into(),
        hash,
        created_at: past,
        expires_at: Some(past),
        revoked_at: None,
        label: None,
    });
    let r = auth.authenticate("etl", &expired).await.unwrap_err();
    assert_eq!(r.reason, R::TokenExpired);
    assert!(r.detail.contains("t-expired"), "{}", r.detail);
    assert_eq!(
        r.client_message(),
        "authentication failed (token_expired): the token has expired; request a new one"
    );

    // Revoked.
    let (revoked, record) = svc.create("etl", None, None).unwrap();
    let first = svc.revoke(&record.id).unwrap();
    let first_at = first.revoked_at.unwrap();
    let r = auth.authenticate("etl", &revoked).await.unwrap_err();
    assert_eq!(r.reason, R::TokenRevoked);
    // Revoking again keeps the first time.
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(svc.revoke(&record.id).unwrap().revoked_at, Some(first_at));
    assert!(matches!(svc.revoke("nope"), Err(TokenError::NotFound(_))));

    // A short-lived token expires on its own.
    let (short, _) = svc
        .create("etl", Some(Duration::from_millis(1)), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(svc.check(&short).unwrap_err().reason, R::TokenExpired);
}

#[tokio::test]
async fn a_token_works_only_for_its_declared_identity() {
    let (_, auth) = setup(&["etl", "reporting"]);
    let (etl_token, _) = auth.tokens().create("etl", None, None).unwrap();
    let r = auth
        .authenticate("reporting", &etl_token)
        .await
        .unwrap_err();
    assert_eq!(r.reason, R::IdentityMismatch);
    assert!(
        !r.detail.contains("etl") && !r.client_message().contains("etl"),
        "{}",
        r.detail
    );

    // A token for an identity later removed from the configuration.
    let (ghost, _) = auth.tokens().create("ghost", None, None).unwrap();
    let r = auth.authenticate("ghost", &ghost).await.unwrap_err();
    assert_eq!(r.reason, R::UnknownIdentity);
}

#[tokio::test]
async fn a_bearer_token_alone_says_whose_it_is_with_the_same_checks() {
    let (_, auth) = setup(&["etl"]);
    let (token, record) = auth.tokens().create("etl", None, None).unwrap();
    let p = auth.authenticate_bearer(&token).await.unwrap();
    assert_eq!(p, auth.authenticate("etl", &token).await.unwrap());
    assert_eq!(p.credential_id.as_deref(), Some(record.id.as_str()));

    let (ghost, _) = auth.tokens().create("ghost", None, None).unwrap();
    let r = auth.authenticate_bearer(&ghost).await.unwrap_err();
    assert_eq!(r.reason, R::UnknownIdentity);
    auth.tokens().revoke(&record.id).unwrap();
    let r = auth.authenticate_bearer(&token).await.unwrap_err();
    assert_eq!(r.reason, R::TokenRevoked);
    let (never_stored, _) = tokens::generate();
    for secret in [never_stored.as_str(), "hunter2", ""] {
        let r = auth.authenticate_bearer(secret).await.unwrap_err();
        assert_eq!(r.reason, R::UnknownToken, "{secret:?}");
        assert!(secret.is_empty() || !r.client_message().contains(secret));
    }
}

#[tokio::test]
async fn a_broken_store_is_unavailable_not_unknown() {
    let (store, auth) = setup(&["etl"]);
    let (token, _) = auth.tokens().create("etl", None, None).unwrap();
    store.broken.store(true, Ordering::SeqCst);
    let r = auth.authenticate("etl", &token).await.unwrap_err();
    assert_eq!(r.reason, R::ProviderUnavailable);
    assert!(
        !r.detail.contains("disk on fire"),
        "store internals stay in the logs"
    );
}

#[test]
fn listing_and_input_checks() {
    let store = Arc::new(MemStore::default());
    let svc = TokenService::new(store);
    let (_, a) = svc.create("etl", None, Some("a")).unwrap();
    let (_, b) = svc.create("reporting", None, None).unwrap();
    let (_, c) = svc.create("etl", None, None).unwrap();
    let ids = |v: Vec<TokenRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(svc.list(Some("etl")).unwrap()),
        [a.id.clone(), c.id.clone()]
    );
    assert_eq!(ids(svc.list(None).unwrap()), [a.id, b.id, c.id]);

    assert!(matches!(
        svc.create("", None, None),
        Err(TokenError::BadIdentity)
    ));
    assert!(matches!(
        svc.create("etl", None, Some("line\nbreak")),
        Err(TokenError::BadLabel)
    ));
    assert!(matches!(
        svc.create("etl", Some(Duration::MAX), None),
        Err(TokenError::ExpiryTooFar)
    ));
}

#[tokio::test]
async fn a_prepared_token_works_only_once_inserted() {
    let (store, auth) = setup(&["etl"]);
    let (token, record) = auth.tokens().prepare("etl", None, None).unwrap();
    assert!(store.tokens.lock().is_empty());
    let r = auth.authenticate("etl", &token).await.unwrap_err();
    assert_eq!(r.reason, R::UnknownToken);
    auth.tokens().insert(&record).unwrap();
    assert!(auth.authenticate("etl", &token).await.is_ok());
}
