//! Adversarial corpus, volume: a row cap that limits rows but not data is no cap. Each case
//! tries to take more than the grant allows: one row holding a whole table (`string_agg`,
//! `array_agg`, `json_agg`), a cursor fetched a few rows at a time, a portal executed with a
//! row limit again and again (simple SQL and the extended protocol), and paging with OFFSET
//! across statements. Through the real gateway against a real server.

mod support;

use support::raw::*;
use support::*;

const POLICIES: &str = r#"
[[policies]]
name = "capped"
groups = ["capped"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["public.items"]
row_cap = 5
byte_cap = 4000
session_row_cap = 40
"#;

fn setup() -> (PgCluster, VigilConfig, Vigil, String) {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE items (id int PRIMARY KEY, label text);
         INSERT INTO items SELECT g, 'label-' || g || repeat('x', 90) FROM generate_series(1, 200) g",
    );
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![(
        "capped".into(),
        "connections = [\"ehr\"]\ngroups = [\"capped\"]".into(),
    )];
    cfg.policies = POLICIES.to_string();
    let token = cfg.create_token("capped");
    let vigil = Vigil::start(&cfg);
    (pg, cfg, vigil, token)
}

fn withheld_notice(reply: &Reply) -> String {
    reply
        .notices()
        .iter()
        .map(|n| n.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn caps_hold_for_aggregates_cursors_portals_and_paging() {
    let (_pg, cfg, vigil, token) = setup();
    let mut c = RawClient::connect(vigil.port, "capped", &token, "adv-volume");

    // One row holding every row: the byte cap withholds it.
    for text in [
        "SELECT string_agg(label, ',') FROM items",
        "SELECT array_agg(label) FROM items",
        "SELECT json_agg(i) FROM items i",
    ] {
        let r = c.simple(text);
        assert!(r.errors().is_empty(), "{text}: {:?}", r.errors());
        assert!(
            r.rows().is_empty(),
            "{text}: a whole table in one row went out"
        );
        assert!(
            withheld_notice(&r).contains("byte cap of 4000"),
            "{text}: {}",
            withheld_notice(&r)
        );
    }
    // A small aggregate is fine.
    let r = c.simple("SELECT count(*) FROM items");
    assert_eq!(r.rows(), vec![vec![Some("200".into())]]);

    // A cursor fetched a few rows at a time: five rows in all.
    assert!(c.simple("BEGIN").errors().is_empty());
    assert!(c
        .simple("DECLARE cur CURSOR FOR SELECT id FROM items ORDER BY id")
        .errors()
        .is_empty());
    let mut got = 0;
    for _ in 0..4 {
        got += c.simple("FETCH 3 FROM cur").rows().len();
    }
    assert_eq!(got, 5, "rows through FETCH");
    // The same cursor over the extended protocol counts with it.
    let r = c.round(
        &[
            parse(b"", "FETCH 3 FROM cur"),
            bind(b"", b"", &[], &[]),
            execute(b"", 0),
            sync(),
        ]
        .concat(),
        1,
    );
    assert!(r[0].rows().is_empty(), "{:?}", r[0].rows());
    assert!(c.simple("COMMIT").errors().is_empty());

    // A portal executed with a row limit, again and again.
    let r = c.round(
        &[
            query("BEGIN"),
            parse(b"p", "SELECT id FROM items ORDER BY id"),
            bind(b"portal", b"p", &[], &[]),
            sync(),
        ]
        .concat(),
        2,
    );
    assert!(r[1].errors().is_empty(), "{:?}", r[1].errors());
    let mut got = 0;
    for _ in 0..5 {
        let r = c.round(&[execute(b"portal", 2), sync()].concat(), 1);
        got += r[0].rows().len();
    }
    assert_eq!(got, 5, "rows through Execute with a row limit");
    assert!(c.simple("COMMIT").errors().is_empty());

    // Paging with OFFSET: each page is a statement; the session cap stops them all (it has
    // taken 5 + 5 + 1 rows so far, and 40 in all may go out).
    let mut got = 0;
    for page in 0..10 {
        let r = c.simple(&format!(
            "SELECT id FROM items ORDER BY id LIMIT 5 OFFSET {}",
            page * 5
        ));
        got += r.rows().len();
    }
    assert_eq!(got, 40 - 11, "rows through OFFSET paging");
    let r = c.simple("SELECT id FROM items WHERE id = 1");
    assert!(r.rows().is_empty());
    assert!(
        withheld_notice(&r).contains("has received the 40 rows"),
        "{}",
        withheld_notice(&r)
    );
    drop(c);

    // The records say what was withheld: 3 aggregates, 1 + 3 + 3 + 3 rows of the cursor,
    // 1 + 2 + 2 of the portal, 1 + 20 pages' rows and the last statement's row.
    let sessions = eventually("the session's end record", || {
        let ended = records_of(&cfg.store_path(), "SessionEnded");
        (!ended.is_empty()).then_some(ended)
    });
    assert_eq!(sessions.len(), 1);
    let withheld: u64 = records_of(&cfg.store_path(), "StatementFinished")
        .iter()
        .map(|r| r["rows_withheld"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(withheld, 40);
}
