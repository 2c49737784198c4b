//! Elevations: a live session's statement that needs an approval-required scope.

use super::*;

// --- elevation ----------------------------------------------------------------------------

fn shape(text: &str) -> StatementShape {
    let mut shape = (*analyzed(text).shape).clone();
    shape.text = text.replace("'secret-5'", "$1");
    shape
}

async fn elevate(w: &World, text: &str) -> Result<Outcome<Arc<Grant>>, ApprovalError> {
    let shape = shape(text);
    w.approvals
        .elevate(ScopeAsk {
            principal: &principal("etl"),
            connection: "ehr",
            session_id: "s-1",
            client_addr: "10.0.0.7:50000",
            reason: Some("fix row"),
            policy: "etl-writes",
            shape: &shape,
        })
        .await
}

#[tokio::test]
async fn an_elevation_asks_once_then_the_session_takes_the_approved_grant_until_revoked() {
    let w = world(&elevation_policies(""));
    let elevations = w.approvals.elevations(&principal("etl"), "ehr");
    assert_eq!(
        elevations
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["etl-writes"]
    );
    let Outcome::Pending(Pending::Fail {
        request_id: id,
        message,
        ..
    }) = elevate(&w, "INSERT INTO t VALUES ('secret-5')")
        .await
        .unwrap()
    else {
        panic!("fail mode")
    };
    assert!(
        message.contains("policy \"etl-writes\"") && message.contains(&id),
        "{message}"
    );
    let Outcome::Pending(again) = elevate(&w, "UPDATE t SET a = 'secret-5'").await.unwrap() else {
        panic!("still pending")
    };
    assert_eq!(
        request_id_of(&again),
        id,
        "the same scope: the same request"
    );
    let request = w.store.request(&id);
    let Subject::Scope {
        session_id, text, ..
    } = &request.subject
    else {
        panic!("{:?}", request.subject)
    };
    assert_eq!(session_id, "s-1");
    assert!(
        !text.contains("secret-5"),
        "approvers see the literal-free text"
    );
    let Event::AccessRequested(asked) = &w.sink.events()[0] else {
        unreachable!()
    };
    assert_eq!(asked.subject, "scope");
    assert_eq!(asked.requesting_session.as_deref(), Some("s-1"));

    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    let Outcome::Ready(grant) = elevate(&w, "INSERT INTO t VALUES ('secret-5')")
        .await
        .unwrap()
    else {
        panic!("approved")
    };
    assert_eq!(grant.request_id.as_deref(), Some(id.as_str()));
    assert_eq!(grant.policy.as_deref(), Some("etl-writes"));

    let r = decide(&w, "alice", &id, Action::Revoke).await.unwrap();
    assert_eq!(r.status, RequestStatus::Revoked);
    assert!(w.revoked.is_revoked(&grant.id), "live sessions end");
    assert!(w.store.grants()[0].revoked_at.is_some());
    assert_eq!(
        w.sink.kinds(),
        [
            "AccessRequested",
            "AccessDecided",
            "GrantIssued",
            "AccessDecided",
            "GrantRevoked"
        ]
    );
    let Outcome::Pending(after) = elevate(&w, "INSERT INTO t VALUES ('secret-5')")
        .await
        .unwrap()
    else {
        panic!("a revoked grant is not taken on")
    };
    assert_ne!(request_id_of(&after), id);
}

#[tokio::test]
async fn a_waiting_elevation_resolves_to_the_grant_its_approval_issued() {
    let w = world(&elevation_policies(
        "mode = \"wait\"\nwait_timeout = \"1m\"",
    ));
    let Outcome::Pending(pending) = elevate(&w, "DELETE FROM t").await.unwrap() else {
        panic!("pending")
    };
    let id = request_id_of(&pending);
    let waiter = tokio::spawn(wait_of(pending));
    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    let grant = waiter.await.unwrap().unwrap();
    assert_eq!(grant.request_id.as_deref(), Some(id.as_str()));
    assert_eq!(Some(grant.id.clone()), w.store.request(&id).grant_id);
}

#[tokio::test]
async fn an_elevation_to_a_policy_that_no_longer_binds_is_an_error() {
    let w = world(&elevation_policies(""));
    let shape = shape("INSERT INTO t VALUES (1)");
    let e = w
        .approvals
        .elevate(ScopeAsk {
            principal: &principal("mallory"),
            connection: "ehr",
            session_id: "s-2",
            client_addr: "10.0.0.9:1",
            reason: None,
            policy: "etl-writes",
            shape: &shape,
        })
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "policy \"etl-writes\" no longer lets \"mallory\" ask for approval"
    );
}
