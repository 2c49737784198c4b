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
