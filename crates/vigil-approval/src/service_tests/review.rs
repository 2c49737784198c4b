//! Held statements: which are held, their single use, their literals.

use super::*;

#[tokio::test]
async fn only_the_kinds_of_statement_a_review_names_are_held() {
    let w = world(&review_policy(""));
    let grant = policy_grant();
    assert!(w.approvals.needs_review(&grant, &analyzed(HELD)));
    assert!(w.approvals.needs_review(&grant, &analyzed("DELETE FROM t")));
    assert!(!w
        .approvals
        .needs_review(&grant, &analyzed("DELETE FROM t WHERE a = 1")));
    assert!(
        !w.approvals
            .needs_review(&grant, &analyzed("UPDATE t SET a = 1")),
        "not listed"
    );
    assert!(!w.approvals.needs_review(&grant, &analyzed("SELECT 1")));
    let mut other = grant.clone();
    other.policy = Some("no-review".into());
    assert!(!w.approvals.needs_review(&other, &analyzed(HELD)));
}

#[tokio::test]
async fn a_held_statement_waits_runs_once_when_approved_and_only_reviewers_see_its_literals() {
    let w = world(&review_policy("mode = \"wait\"\nwait_timeout = \"1m\""));
    let grant = policy_grant();
    let Outcome::Pending(pending) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("held")
    };
    let id = request_id_of(&pending);
    let Pending::Wait { notice, .. } = &pending else {
        panic!("wait mode")
    };
    assert!(
        notice.starts_with(&format!(
            "this statement is held for a reviewer's approval: access request {id} is pending"
        )),
        "{notice}"
    );
    let waiter = tokio::spawn(wait_of(pending));
    let Event::AccessRequested(asked) = &w.sink.events()[0] else {
        unreachable!()
    };
    assert_eq!(asked.subject, "statement");
    assert_eq!(asked.scope_digest, None);
    let asked_text = asked.statement_text.clone().unwrap();
    assert!(asked_text.contains("CREATE TABLE held_w") && !asked_text.contains("x-literal-42"));

    // The literals: to a reviewer whose group may see them, recorded first; to no one else.
    let by_alice = w.approvals.show(&caller("alice"), &id).await.unwrap();
    let statement = by_alice.statement.unwrap();
    assert_eq!(statement.literals, Literals::Shown(HELD.to_string()));
    assert_eq!(statement.approval, None);
    assert_eq!(
        w.sink.kinds(),
        ["AccessRequested", "StatementLiteralsShown"]
    );
    for who in ["bob", "etl"] {
        let view = w.approvals.show(&caller(who), &id).await.unwrap();
        assert_eq!(
            view.statement.unwrap().literals,
            Literals::Withheld,
            "{who}"
        );
    }
    let by_admin = w.approvals.show(&Caller::Admin, &id).await.unwrap();
    assert_eq!(by_admin.statement.unwrap().literals, Literals::Withheld);
    for event in w.sink.events() {
        let text = serde_json::to_string(&event).unwrap();
        assert!(!text.contains("x-literal-42"), "{text}");
    }

    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    assert!(
        w.store.grants().is_empty(),
        "a held statement's approval issues no grant"
    );
    let used = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(used, id);
    let approval = w.store.statement_approval(&id).unwrap().unwrap();
    assert_eq!(approval.used_session.as_deref(), Some("s-1"));
    // Used: the text with literals is gone, and the same statement sent again is held again.
    let view = w.approvals.show(&caller("alice"), &id).await.unwrap();
    let statement = view.statement.unwrap();
    assert_eq!(statement.literals, Literals::NotKept);
    assert_eq!(
        statement.approval.unwrap().used_session.as_deref(),
        Some("s-1")
    );
    let Outcome::Pending(again) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("an approval runs its statement once")
    };
    assert_ne!(request_id_of(&again), id);
}

#[tokio::test]
async fn in_fail_mode_an_approved_statement_is_used_once_by_whoever_sends_it_first() {
    let w = world(&review_policy(""));
    let grant = policy_grant();
    let Outcome::Pending(Pending::Fail {
        request_id: id,
        message,
        hint,
    }) = hold(&w, &grant, "s-1").await.unwrap()
    else {
        panic!("fail mode")
    };
    assert!(
        message.contains("send it again, unchanged, once approved"),
        "{message}"
    );
    assert!(hint.starts_with("nothing was run; "), "{hint}");
    let Outcome::Pending(same) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("still held")
    };
    assert_eq!(
        request_id_of(&same),
        id,
        "the same statement shares its request"
    );
    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    let Outcome::Ready(used) = hold(&w, &grant, "s-2").await.unwrap() else {
        panic!("approved")
    };
    assert_eq!(used, id);
    assert!(matches!(
        hold(&w, &grant, "s-1").await.unwrap(),
        Outcome::Pending(_)
    ));
}

#[tokio::test]
async fn revoking_an_approved_statement_not_run_yet_voids_its_approval() {
    let w = world(&review_policy(""));
    let grant = policy_grant();
    let Outcome::Pending(pending) = hold(&w, &grant, "s-1").await.unwrap() else {
        panic!("held")
    };
    let id = request_id_of(&pending);
    decide(&w, "alice", &id, Action::Approve).await.unwrap();
    decide(&w, "carol", &id, Action::Revoke).await.unwrap();
    let approval = w.store.statement_approval(&id).unwrap().unwrap();
    assert_eq!(approval.used_session.as_deref(), Some("(revoked)"));
    assert!(matches!(
        hold(&w, &grant, "s-1").await.unwrap(),
        Outcome::Pending(_)
    ));
}
