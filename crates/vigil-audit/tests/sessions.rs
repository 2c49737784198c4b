//! Reading sessions back through the store's session index.

mod common;

use common::*;
use vigil_audit::sessions::{self, SessionQuery};
use vigil_audit::{wait_durable, AuditError};
use vigil_core::SessionId;

#[test]
fn sessions_are_listed_newest_first_with_their_statements() {
    let env = Env::new();
    let writer = env.start();
    let first = SessionId::new();
    wait_durable(writer.append(session_started(first))).unwrap();
    for n in 1..=2 {
        wait_durable(writer.append(statement_started(first, n))).unwrap();
        writer.append_detached(statement_finished(first, n));
    }
    writer.append_detached(session_ended(first));
    let second = SessionId::new();
    wait_durable(writer.append(session_started(second))).unwrap();
    wait_durable(writer.append(statement_started(second, 1))).unwrap();
    writer.shutdown().unwrap();

    let all = sessions::list(&*env.store, &*env.store, &SessionQuery::default()).unwrap();
    let ids: Vec<_> = all.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, [second.to_string(), first.to_string()]);
    assert_eq!(all[1].statements, 1, "totals come from SessionEnded");
    assert!(all[1].ended_seq.is_some());
    assert_eq!(all[0].ended_seq, None, "still open");
    assert_eq!(all[0].client_addr, "10.0.0.7:51234");

    let limited = SessionQuery {
        limit: Some(1),
        identity: Some("etl".into()),
        ..SessionQuery::default()
    };
    assert_eq!(
        sessions::list(&*env.store, &*env.store, &limited)
            .unwrap()
            .len(),
        1
    );

    let detail = sessions::detail(&*env.store, &first.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(detail.statements.len(), 2);
    assert!(detail.statements.iter().all(|s| s.finished.is_some()));
    let open = sessions::detail(&*env.store, &second.to_string())
        .unwrap()
        .unwrap();
    assert!(open.statements[0].finished.is_none());
    assert!(sessions::detail(&*env.store, "no-such-session")
        .unwrap()
        .is_none());

    // A record that no longer decodes is an error naming it, not a silent gap.
    let conn = env.raw();
    let seq = detail.statements[0].seq;
    set_body(&conn, seq, b"{}", true);
    match sessions::detail(&*env.store, &first.to_string()) {
        Err(AuditError::Decode { seq: bad, .. }) => assert_eq!(bad, seq),
        other => panic!("expected a decode error, got {other:?}"),
    }
}
