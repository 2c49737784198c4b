//! Requests raised for sessions: quorum, the grant written once, the waiter woken; denial; expiry.

use super::*;

// --- request, quorum, the grant, the waiter ------------------------------------------------

#[tokio::test]
async fn a_quorum_issues_one_grant_recorded_first_and_wakes_the_waiting_session() {
    let w = world(&session_policy(
        r#"approver_groups = ["dba", "security"]
min_approvals = 2
require_all_groups = true
max_duration = "2h"
mode = "wait"
wait_timeout = "1m""#,
    ));
    let pending = session_ask(&w).await.unwrap().expect("a rule applies");
    let id = request_id_of(&pending);
    let Pending::Wait { notice, .. } = &pending else {
        panic!("wait mode")
    };
    assert!(
        notice.contains(&id)
            && notice.contains("waiting up to 1m")
            && notice.contains(&format!(
                "https://vigil.example.org:9480/api/v1/access-requests/{id}/approve"
            )),
        "{notice}"
    );
    let waiter = tokio::spawn(wait_of(pending));
    // A second connection while it is pending shares the request.
    let again = session_ask(&w).await.unwrap().unwrap();
    assert_eq!(request_id_of(&again), id);
    assert_eq!(w.store.requests().len(), 1);
    assert_eq!(w.sink.kinds(), ["AccessRequested"]);
    let Event::AccessRequested(asked) = &w.sink.events()[0] else {
        unreachable!()
    };
    assert_eq!(asked.subject, "access");
    assert_eq!(asked.identity_kind, Some(IdentityKind::Machine));
    assert_eq!(asked.client_addr.as_deref(), Some("10.0.0.7:50000"));
    assert!(asked.scope_digest.is_some());

    let r = decide(&w, "alice", &id, Action::Approve).await.unwrap();
    assert_eq!(r.status, RequestStatus::Pending, "one group of two");
    assert!(w.store.grants().is_empty());
    assert!(!waiter.is_finished());

    let r = decide(&w, "bob", &id, Action::Approve).await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let grants = w.store.grants();
    assert_eq!(grants.len(), 1, "one grant");
    assert_eq!(w.store.grant_inserts.load(Ordering::SeqCst), 1);
    let grant = &grants[0];
    assert_eq!(r.grant_id.as_deref(), Some(grant.id.as_str()));
    assert_eq!(grant.source, GrantSource::Approval);
    assert_eq!(grant.policy.as_deref(), Some("etl-on-approval"));
    assert_eq!(
        grant.expires_at.unwrap().micros_since(grant.not_before),
        2 * 3600 * 1_000_000,
        "the rule's longest grant"
    );
    assert_eq!(
        w.sink.kinds(),
        [
            "AccessRequested",
            "AccessDecided",
            "AccessDecided",
            "GrantIssued"
        ]
    );
    let issued = grant_issued_records(&w);
    assert_eq!(issued.len(), 1, "recorded once");
    assert_eq!(issued[0], grant_issued(grant));
    assert_eq!(issued[0].request_id.as_deref(), Some(id.as_str()));
    assert_eq!(issued[0].source, "approval");
    let decided = w.sink.drafts()[3].clone();
    assert_eq!(decided.identity.as_ref().unwrap().name, "bob");
    assert_eq!(decided.connection.as_deref(), Some("ehr"));
    assert_eq!(w.store.request(&id).status, RequestStatus::Approved);

    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by the decision")
        .unwrap()
        .expect("approved");
}

#[tokio::test]
async fn a_denial_ends_the_wait_naming_the_request_and_issues_nothing() {
    let w = world(&session_policy(
        "approver_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"1m\"",
    ));
    let pending = session_ask(&w).await.unwrap().unwrap();
    let id = request_id_of(&pending);
    let waiter = tokio::spawn(wait_of(pending));
    let r = decide(&w, "alice", &id, Action::Deny).await.unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
    let why = waiter.await.unwrap().unwrap_err();
    assert_eq!(
        why,
        NotApproved::Ended {
            id: id.clone(),
            status: "denied"
        }
    );
    assert_eq!(
        why.to_string(),
        format!("access request {id} was denied; no grant was issued")
    );
    assert!(w.store.grants().is_empty());
    let e = decide(&w, "carol", &id, Action::Approve).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::Approver(ApproverRefused::NotPending("denied"))
        ),
        "{e}"
    );
    let e = decide(&w, "alice", &id, Action::Revoke).await.unwrap_err();
    assert!(matches!(e, ApprovalError::NothingToRevoke("denied")), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn fail_mode_names_the_request_and_how_to_approve_it() {
    let w = world(&session_policy("approver_groups = [\"dba\"]"));
    let Some(Pending::Fail {
        request_id,
        message,
        hint,
    }) = session_ask(&w).await.unwrap()
    else {
        panic!("fail mode is the default")
    };
    assert_eq!(
        message,
        format!(
            "access to connection \"ehr\" needs approval: access request {request_id} is pending"
        )
    );
    assert!(hint.ends_with("; then connect again"), "{hint}");
    assert!(hint.contains(&format!("vigil request approve {request_id} --reason TEXT")));
    // An identity no rule binds: not for approvals to decide.
    let none = w
        .approvals
        .session_access(&principal("mallory"), "ehr", "10.0.0.8:1", None)
        .await
        .unwrap();
    assert!(none.is_none());
}

// --- expiry -------------------------------------------------------------------------------

#[tokio::test]
async fn pending_requests_expire_once_and_can_no_longer_be_decided() {
    let w = world(&session_policy("approver_groups = [\"dba\"]"));
    let id = request_id_of(&session_ask(&w).await.unwrap().unwrap());
    w.approvals.sweep().await.unwrap();
    assert_eq!(
        w.store.request(&id).status,
        RequestStatus::Pending,
        "not yet"
    );
    w.store.set_expiry(
        &id,
        Timestamp::from_micros(Timestamp::now().as_micros() - 1),
    );
    w.approvals.sweep().await.unwrap();
    w.approvals.sweep().await.unwrap();
    assert_eq!(w.store.request(&id).status, RequestStatus::Expired);
    assert_eq!(
        w.sink.kinds(),
        ["AccessRequested", "AccessRequestExpired"],
        "recorded once"
    );
    let e = decide(&w, "alice", &id, Action::Approve).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::Approver(ApproverRefused::NotPending("expired"))
        ),
        "{e}"
    );
    // A new connection raises a new request.
    let again = request_id_of(&session_ask(&w).await.unwrap().unwrap());
    assert_ne!(again, id);
}

#[tokio::test]
async fn a_wait_ends_at_its_timeout_and_the_request_stays_pending() {
    let w = world(&session_policy(
        "approver_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"50ms\"",
    ));
    let pending = session_ask(&w).await.unwrap().unwrap();
    let id = request_id_of(&pending);
    let why = wait_of(pending).await.unwrap_err();
    assert_eq!(
        why.to_string(),
        format!("access request {id} was not approved within the wait timeout; it stays pending: connect again once it is approved")
    );
    assert_eq!(w.store.request(&id).status, RequestStatus::Pending);
}

#[tokio::test]
async fn a_waiter_hears_of_an_expiry() {
    let w = world(&session_policy(
        "approver_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"1m\"",
    ));
    let pending = session_ask(&w).await.unwrap().unwrap();
    let id = request_id_of(&pending);
    let waiter = tokio::spawn(wait_of(pending));
    w.store.set_expiry(
        &id,
        Timestamp::from_micros(Timestamp::now().as_micros() - 1),
    );
    w.approvals.sweep().await.unwrap();
    let why = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        why,
        NotApproved::Ended {
            id,
            status: "expired"
        }
    );
}
