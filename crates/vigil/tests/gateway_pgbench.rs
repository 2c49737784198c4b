//! pgbench through the gateway: initialisation (DDL, COPY, VACUUM) and the select-only load in
//! all three query modes, with every transaction's statement recorded.

mod support;

use std::process::Command;
use support::*;

fn pgbench(vigil: &Vigil, token: &str, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &vigil.port.to_string(),
            "-U",
            "etl",
        ])
        .args(args)
        .arg("ehr")
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn transactions(report: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in:\n{report}"))
}

#[test]
fn pgbench_initialises_and_runs_in_every_query_mode() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    pgbench(&vigil, &token, &["-i", "-s", "1", "-q"]);
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );

    let mut total = 0;
    for mode in ["simple", "extended", "prepared"] {
        let report = pgbench(
            &vigil,
            &token,
            &["-S", "-c", "4", "-j", "2", "-t", "200", "-M", mode],
        );
        let n = transactions(&report);
        assert_eq!(n, 800, "{mode}: {report}");
        total += n;
    }
    let store = cfg.store_path();
    let selects = eventually("one record per transaction", || {
        let n = records_of(&store, "StatementStarted")
            .into_iter()
            .filter(|s| {
                s["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
            })
            .count() as u64;
        let ok = records_of(&store, "StatementFinished")
            .into_iter()
            .filter(|f| f["command_tags"][0] == "SELECT 1" && f["status"] == "ok")
            .count() as u64;
        (n >= total && ok >= total).then_some(n)
    });
    assert_eq!(selects, total);
    let verify = cfg.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
