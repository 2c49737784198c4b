//! The bounds a session runs under, checked against PostgreSQL's own reading of `SET`: names
//! folded or quoted, values with units, rounding as the server rounds, `set_config()`.

use std::time::Duration;
use vigil_policy::{Scope, SessionBounds};
use vigil_sql::{Analyzer, LexOptions, StaticCatalog};

fn check(bounds: &SessionBounds, sql: &str) -> Result<(), &'static str> {
    let catalog = StaticCatalog::new([], vec!["public".into()]);
    let access = Analyzer::new(16).access(sql, LexOptions::default(), &catalog);
    bounds.check(&access).map_err(|d| d.rule)
}

#[test]
fn a_bound_may_be_lowered_not_lifted() {
    let bounds = SessionBounds {
        statement_timeout: Some(Duration::from_secs(30)),
        idle_in_transaction_timeout: Some(Duration::from_secs(60)),
    };
    for ok in [
        "SET statement_timeout = 1000",
        "SET statement_timeout = '5s'",
        "SET LOCAL statement_timeout TO '30s'",
        "SET statement_timeout = '0.5min'",
        "RESET statement_timeout",
        "SET statement_timeout TO DEFAULT",
        "RESET ALL",
        "SET idle_in_transaction_session_timeout = '1min'",
        "SET lock_timeout = 0",
        "SELECT 1",
    ] {
        assert_eq!(check(&bounds, ok), Ok(()), "{ok}");
    }
    for refused in [
        "SET statement_timeout = 0",
        "SET statement_timeout = '0'",
        "SET statement_timeout = '31s'",
        "SET statement_timeout = '1h'",
        "SET statement_timeout = '250us'",
        "SET statement_timeout = 0.4",
        "SET statement_timeout = 0.5",
        "SET statement_timeout = '.5'",
        "SET statement_timeout = '500us'",
        "SET statement_timeout = '0.0005s'",
        "SET statement_timeout = '010'",
        "SET statement_timeout = '0x10'",
        "SET statement_timeout = -1",
        "SET \"Statement_Timeout\" = 0",
        "SET SESSION STATEMENT_TIMEOUT = 0",
        "SET LOCAL statement_timeout = 0",
        "SELECT 1; SET statement_timeout = 0",
        "SET idle_in_transaction_session_timeout = 0",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT pg_catalog.set_config('x', '0', false)",
        // Past any integer: saturates, and is past the bound.
        "SET statement_timeout = '99999999999999999999999999d'",
    ] {
        assert_eq!(check(&bounds, refused), Err("bounded_setting"), "{refused}");
    }
    // Without bounds nothing is refused here.
    assert_eq!(
        check(&SessionBounds::default(), "SET statement_timeout = 0"),
        Ok(())
    );
}

#[test]
fn the_strictest_bound_holds_and_login_settings_carry_it() {
    let a: Scope = toml::from_str("statement_timeout = \"30s\"").unwrap();
    let b: Scope = toml::from_str("statement_timeout = \"5s\"").unwrap();
    let c = Scope::default();
    let bounds = SessionBounds::of([&a, &b, &c]);
    assert_eq!(bounds.statement_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        bounds.login_settings(),
        vec![("statement_timeout", "5000".to_string())]
    );
    assert_eq!(
        check(&bounds, "SET statement_timeout = '10s'"),
        Err("bounded_setting")
    );
}
