//! Who may decide and who may ask; who sees which requests.

use super::*;

// --- who may decide -----------------------------------------------------------------------

#[tokio::test]
async fn only_declared_humans_of_the_approver_groups_decide_and_refusals_change_nothing() {
    let w = world(&session_policy("approver_groups = [\"dba\"]"));
    let id = request_id_of(&session_ask(&w).await.unwrap().unwrap());
    let refused = |e: ApprovalError| (e.kind(), e.to_string());
    let cases = [
        (
            w.approvals
                .decide(&caller("mallory"), &id, Action::Approve, "ok", None)
                .await,
            ErrorKind::Forbidden,
            "mallory is not in any of the approver groups of this request",
        ),
        (
            w.approvals
                .decide(&caller("bot"), &id, Action::Approve, "ok", None)
                .await,
            ErrorKind::Forbidden,
            "only human identities may decide requests",
        ),
        (
            w.approvals
                .decide(&caller("alice"), &id, Action::Approve, "  ", None)
                .await,
            ErrorKind::Forbidden,
            "a rationale is required",
        ),
        (
            w.approvals
                .decide(&Caller::Admin, &id, Action::Approve, "ok", None)
                .await,
            ErrorKind::Invalid,
            "with the admin token, name the human approver you act for (\"as\", or --as on the CLI)",
        ),
        (
            w.approvals
                .decide(&Caller::Admin, &id, Action::Approve, "ok", Some("eve"))
                .await,
            ErrorKind::Forbidden,
            "\"eve\" is not a declared identity",
        ),
        (
            w.approvals
                .decide(&caller("alice"), &id, Action::Approve, "ok", Some("carol"))
                .await,
            ErrorKind::Forbidden,
            "only the admin token may act for someone else",
        ),
        (
            w.approvals
                .decide(&caller("alice"), "no-such-id", Action::Approve, "ok", None)
                .await,
            ErrorKind::NotFound,
            "no access request no-such-id",
        ),
    ];
    for (result, kind, message) in cases {
        assert_eq!(refused(result.unwrap_err()), (kind, message.to_string()));
    }
    assert_eq!(w.sink.kinds(), ["AccessRequested"], "nothing recorded");
    assert_eq!(w.store.request(&id).decisions, []);
    // The admin token acting for a human approver: the record says so.
    let r = w
        .approvals
        .decide(&Caller::Admin, &id, Action::Approve, "OPS-2", Some("alice"))
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let Event::AccessDecided(d) = &w.sink.events()[1] else {
        panic!("{:?}", w.sink.kinds())
    };
    assert_eq!(
        (d.approver.as_str(), d.approver_auth.as_str()),
        ("alice", "admin_token")
    );
    let e = decide(&w, "carol", &id, Action::Approve).await.unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::Approver(ApproverRefused::NotPending("approved"))
    ));
}

#[tokio::test]
async fn nobody_decides_their_own_request_nor_asks_for_someone_else() {
    // alice is both a requester (bound by the policy) and an approver (group dba).
    let w = world(
        r#"
[[policies]]
name = "dba-break-glass"
identities = ["alice"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["*"]
[policies.approval]
approver_groups = ["dba"]
min_approvals = 2
"#,
    );
    let requester = Requester::of(&caller("alice"), None).unwrap();
    let r = w
        .approvals
        .create(
            requester,
            NewRequest {
                connection: "ehr".into(),
                duration: Some(Duration::from_secs(24 * 3600)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        r.duration,
        Duration::from_secs(3600),
        "capped by the default max_duration"
    );
    let e = decide(&w, "alice", &r.id, Action::Approve)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApprovalError::Approver(ApproverRefused::SelfApproval)),
        "{e}"
    );
    // Not through the admin token either.
    let e = w
        .approvals
        .decide(&Caller::Admin, &r.id, Action::Deny, "no", Some("alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApprovalError::Approver(ApproverRefused::SelfApproval)),
        "{e}"
    );
    // Approving twice does not count twice.
    decide(&w, "carol", &r.id, Action::Approve).await.unwrap();
    let e = decide(&w, "carol", &r.id, Action::Approve)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "carol has already decided this request");

    // Asking: an identity only for itself; the admin token names whom for.
    let e = Requester::of(&caller("etl"), Some("alice".into())).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::Forbidden,
            "an identity may ask only for itself".into()
        )
    );
    let e = Requester::of(&Caller::Admin, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let admin_for_alice = Requester::of(&Caller::Admin, Some("alice".into())).unwrap();
    assert!(admin_for_alice.principal.is_none());
    // Only policies that bind the requester, and only the one named.
    let e = w
        .approvals
        .create(
            Requester::of(&caller("bob"), None).unwrap(),
            NewRequest {
                connection: "ehr".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::NotApplicable,
            "no policy lets identity \"bob\" ask for approval on connection \"ehr\"".into()
        )
    );
    let e = w
        .approvals
        .create(
            admin_for_alice,
            NewRequest {
                connection: "ehr".into(),
                policy: Some("other".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotApplicable);
}

// --- listing ------------------------------------------------------------------------------

#[tokio::test]
async fn machines_list_only_their_own_requests() {
    let w = world(
        r#"
[[policies]]
name = "p"
identities = ["etl", "bot"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["*"]
[policies.approval]
approver_groups = ["security"]
"#,
    );
    for who in ["etl", "bot", "etl"] {
        let requester = Requester::of(&Caller::Admin, Some(who.into())).unwrap();
        let ask = NewRequest {
            connection: "ehr".into(),
            reason: Some("r".repeat(600)),
            ..Default::default()
        };
        let r = w.approvals.create(requester, ask).await.unwrap();
        assert_eq!(r.reason.unwrap().len(), 500, "reasons are bounded");
    }
    let all = w
        .approvals
        .list(&Caller::Admin, RequestFilter::default())
        .await;
    assert_eq!(all.unwrap().len(), 3);
    let by_human = w
        .approvals
        .list(&caller("bob"), RequestFilter::default())
        .await;
    assert_eq!(by_human.unwrap().len(), 3);
    let own = w
        .approvals
        .list(
            &caller("bot"),
            RequestFilter {
                identity: Some("etl".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        own.iter().map(|r| r.identity.as_str()).collect::<Vec<_>>(),
        ["bot"]
    );
    let id = &own[0].id;
    assert!(w.approvals.show(&caller("bot"), id).await.is_ok());
    let e = w.approvals.show(&caller("etl"), id).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "another machine's request is not found"
    );
    let limited = RequestFilter {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(
        w.approvals
            .list(&Caller::Admin, limited)
            .await
            .unwrap()
            .len(),
        1
    );
}
