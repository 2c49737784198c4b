//! A failure to record or to keep stops what it covers.

use super::*;

// --- fail closed --------------------------------------------------------------------------

#[tokio::test]
async fn an_audit_trail_that_refuses_the_decision_stops_the_approval() {
    let w = world(&session_policy(
        "approver_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"300ms\"",
    ));
    let pending = session_ask(&w).await.unwrap().unwrap();
    let id = request_id_of(&pending);
    let waiter = tokio::spawn(wait_of(pending));
    w.sink.refusing.store(true, Ordering::SeqCst);
    let e = decide(&w, "alice", &id, Action::Approve).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failed);
    assert_eq!(
        e.to_string(),
        "cannot record the decision: the audit trail is unavailable: disk full"
    );
    assert!(w.store.grants().is_empty(), "no grant");
    let stored = w.store.request(&id);
    assert_eq!(
        (stored.status, stored.decisions.len()),
        (RequestStatus::Pending, 0)
    );
    assert!(
        matches!(waiter.await.unwrap(), Err(NotApproved::TimedOut { .. })),
        "the waiter is not let in"
    );
    // Once the trail is back, the decision goes through.
    w.sink.refusing.store(false, Ordering::SeqCst);
    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    assert_eq!(w.store.grants().len(), 1);
}

#[tokio::test]
async fn a_request_the_audit_trail_refuses_is_not_raised() {
    let w = world(&session_policy("approver_groups = [\"dba\"]"));
    w.sink.refusing.store(true, Ordering::SeqCst);
    let e = session_ask(&w).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "cannot record the access request: the audit trail is unavailable: disk full"
    );
    assert!(w.store.requests().is_empty(), "not stored, nobody told");

    let w = world(&review_policy(""));
    let grant = policy_grant();
    w.sink.refusing.store(true, Ordering::SeqCst);
    assert!(
        hold(&w, &grant, "s-1").await.is_err(),
        "the statement is refused"
    );
    assert!(w.store.requests().is_empty());
}

#[tokio::test]
async fn literals_are_not_shown_unless_their_showing_is_recorded() {
    let w = world(&review_policy(""));
    let grant = policy_grant();
    let Outcome::Pending(pending) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("held")
    };
    let id = request_id_of(&pending);
    w.sink.refusing.store(true, Ordering::SeqCst);
    let e = w.approvals.show(&caller("alice"), &id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failed);
    assert!(!e.to_string().contains("x-literal-42"));
}

#[tokio::test]
async fn a_grant_the_store_cannot_keep_leaves_the_request_pending() {
    let w = world(&session_policy(
        "approver_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"300ms\"",
    ));
    let pending = session_ask(&w).await.unwrap().unwrap();
    let id = request_id_of(&pending);
    w.store.refusing_grants.store(true, Ordering::SeqCst);
    let e = decide(&w, "alice", &id, Action::Approve).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (ErrorKind::Failed, "store error: constraint failed".into())
    );
    assert_eq!(w.store.request(&id).status, RequestStatus::Pending);
    assert!(matches!(
        wait_of(pending).await,
        Err(NotApproved::TimedOut { .. })
    ));
    // A store that cannot be read: nothing is decided either.
    w.store.down.store(true, Ordering::SeqCst);
    let e = decide(&w, "carol", &id, Action::Approve).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failed);
}

#[tokio::test]
async fn a_decision_another_decider_overtook_gives_nothing() {
    // Another gateway changed the request between our read and our write: our decision was
    // recorded and its grant kept, but the request does not read approved. The grant must not
    // stay live (the next session would hold it).
    let w = world(&session_policy("approver_groups = [\"dba\"]"));
    let id = request_id_of(&session_ask(&w).await.unwrap().unwrap());
    w.store.overtaken.store(true, Ordering::SeqCst);
    let e = decide(&w, "alice", &id, Action::Approve).await.unwrap_err();
    assert!(matches!(e, ApprovalError::ChangedWhileDeciding), "{e}");
    let grants = w.store.grants();
    assert_eq!(grants.len(), 1);
    assert!(grants[0].revoked_at.is_some(), "the grant is withdrawn");
    assert!(w.revoked.is_revoked(&grants[0].id));
    assert_eq!(
        w.sink.kinds(),
        [
            "AccessRequested",
            "AccessDecided",
            "GrantIssued",
            "GrantRevoked"
        ],
        "the trail says so"
    );
    assert_eq!(w.store.request(&id).status, RequestStatus::Pending);

    // A held statement's approval likewise: it cannot be used.
    let w = world(&review_policy(""));
    let grant = policy_grant();
    let Outcome::Pending(pending) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("held")
    };
    let id = request_id_of(&pending);
    w.store.overtaken.store(true, Ordering::SeqCst);
    let e = decide(&w, "alice", &id, Action::Approve).await.unwrap_err();
    assert!(matches!(e, ApprovalError::ChangedWhileDeciding), "{e}");
    w.store.overtaken.store(false, Ordering::SeqCst);
    assert!(
        matches!(hold(&w, &grant, "s-1").await.unwrap(), Outcome::Pending(_)),
        "the statement is still held"
    );
}
