//! Evidence end to end: real psql traffic through `vigil serve`, then the artifacts exported by
//! the CLI and by the HTTP API (auditor role), and an evidence bundle (with the sessions' replay
//! captures) made and verified.

mod support;

use std::process::Command;
use support::*;

fn curl(api: &str, path: &str, token: &str) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{api}{path}"))
        .output()
        .unwrap();
    let text = out.stdout;
    let cut = text.iter().rposition(|b| *b == b'\n').unwrap();
    (
        String::from_utf8_lossy(&text[cut + 1..]).to_string(),
        text[..cut].to_vec(),
    )
}

fn cli_ok(cfg: &VigilConfig, args: &[&str]) -> Vec<u8> {
    let out = cfg.cli(args);
    assert!(
        out.status.success(),
        "vigil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn psql_traffic_is_exported_by_the_cli_and_the_api_alike() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    assert!(vigil.psql("etl", &token, "SELECT 42").0);
    assert!(!vigil.psql("etl", &token, "SELECT 1/0").0);
    let store = cfg.store_path();
    eventually("two session ends", || {
        (records_of(&store, "SessionEnded").len() == 2).then_some(())
    });

    let jsonl = cli_ok(&cfg, &["export", "statements", "--since", "1h"]);
    let rows: Vec<serde_json::Value> = String::from_utf8(jsonl.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["text"], "SELECT $1");
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[0]["identity"], "etl");
    assert_eq!(rows[1]["status"], "error");
    assert_eq!(rows[1]["sqlstate"], "22012");
    let started = records_of(&store, "StatementStarted");
    assert_eq!(rows[0]["seq"], started[0]["seq"]);

    let csv_path = cfg.dir.path().join("statements.csv");
    cli_ok(
        &cfg,
        &[
            "export",
            "statements",
            "--since",
            "1h",
            "-o",
            csv_path.to_str().unwrap(),
        ],
    );
    // The format follows the file's extension.
    let csv = std::fs::read(&csv_path).unwrap();
    let csv_text = String::from_utf8_lossy(&csv);
    assert!(csv_text.starts_with("seq,hash,at,session_id,statement_seq,identity,"));
    assert_eq!(csv_text.lines().count(), 3, "{csv_text}");

    let sessions = cli_ok(
        &cfg,
        &[
            "export",
            "sessions",
            "--format",
            "json",
            "--identity",
            "etl",
        ],
    );
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&sessions).unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .all(|s| s["end_reason"] == "client_terminated"
            && s["application_name"] == "psql"
            && s["auth_method"] == "service_token"));
    let none = cli_ok(&cfg, &["export", "sessions", "--identity", "someone-else"]);
    assert!(none.is_empty());

    let api = format!("http://127.0.0.1:{}", vigil.api_port);
    let (code, body) = curl(&api, "/api/v1/exports/statements?since=1h", AUDITOR_TOKEN);
    assert_eq!(code, "200");
    assert_eq!(body, jsonl, "the API streams what the CLI writes");
    let (code, body) = curl(
        &api,
        "/api/v1/exports/statements?since=1h&format=csv",
        AUDITOR_TOKEN,
    );
    assert_eq!(code, "200");
    assert_eq!(body, csv);
    let (code, _) = curl(&api, "/api/v1/exports/statements", ADMIN_TOKEN);
    assert_eq!(code, "403", "the admin role does not export");

    // A bundle of the period, made while the gateway runs, verifies offline with the key
    // exported apart; with another key it does not.
    let bundle = cfg.dir.path().join("evidence.tar.gz");
    cli_ok(
        &cfg,
        &[
            "evidence",
            "bundle",
            "--since",
            "1h",
            "-o",
            bundle.to_str().unwrap(),
        ],
    );
    let pem = cli_ok(&cfg, &["audit", "public-key"]);
    let key = cfg.dir.path().join("gateway.pub");
    std::fs::write(&key, pem).unwrap();
    let verify = |key: &std::path::Path| {
        Command::new(vigil_bin())
            .args(["evidence", "verify", "--json", "--public-key"])
            .arg(key)
            .arg(&bundle)
            .output()
            .unwrap()
    };
    let out = verify(&key);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["rows"]["statements"], 2);
    assert_eq!(verdict["rows"]["sessions"], 2);
    // Both sessions' replay captures travel with it, each the one its end record names.
    let captures = verdict["replay"]["captures"].as_array().unwrap();
    assert_eq!(verdict["replay"]["selection"], "all");
    assert_eq!(captures.len(), 2, "{verdict}");
    let ended = records_of(&store, "SessionEnded");
    for (capture, end) in captures.iter().zip(&ended) {
        assert_eq!(capture["session_id"], end["session_id"]);
        assert_eq!(capture["sha256"], end["replay_sha256"]);
    }
    let other = cfg.dir.path().join("other.pub");
    std::fs::write(
        &other,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let out = verify(&other);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));
}

#[test]
fn purge_removes_expired_statements_while_the_gateway_runs_and_the_chain_still_verifies() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    let hold = "[[retention.legal_holds]]\nidentity = \"contractor-7\"\nreason = \"matter 17\"\n";
    cfg.extra = format!("[retention]\nstatements = \"1s\"\nreplay = \"1s\"\n{hold}");
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    assert!(vigil.psql("etl", &token, "SELECT 1").0);
    let store = cfg.store_path();
    // The gateway put the configuration's hold on record when it started.
    let placed = records_of(&store, "LegalHoldPlaced");
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0]["identity_name"], "contractor-7");
    assert_eq!(placed[0]["placed_by"], "serve");
    eventually("session end", || {
        (!records_of(&store, "SessionEnded").is_empty()).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1_100));

    let dry = String::from_utf8(cli_ok(&cfg, &["audit", "purge", "--dry-run"])).unwrap();
    assert!(
        dry.contains("would purge 2 records") && dry.contains("statements 2"),
        "{dry}"
    );
    assert_eq!(
        records_of(&store, "StatementStarted").len(),
        1,
        "a dry run deletes nothing"
    );
    let first = records_of(&store, "SessionEnded")[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let capture = cfg.data_dir().join("replay").join(format!("{first}.jsonl"));
    assert!(capture.exists());
    assert!(dry.contains("1 replay captures past retention"), "{dry}");
    let done = String::from_utf8(cli_ok(&cfg, &["audit", "purge"])).unwrap();
    assert!(done.contains("2 records deleted"), "{done}");
    assert!(
        done.contains("1 replay captures past retention deleted"),
        "{done}"
    );
    assert!(!capture.exists(), "the expired capture is gone");
    assert_eq!(
        records_of(&store, "AuditPurged")[0]["captures"][0],
        first.as_str(),
        "the purge record names the captures it deletes"
    );
    assert!(records_of(&store, "StatementStarted").is_empty());
    assert_eq!(records_of(&store, "AuditPurged").len(), 1);

    // The gateway goes on recording on the same chain, which still verifies.
    assert!(vigil.psql("etl", &token, "SELECT 2").0);
    let out = cfg.cli(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("2 records purged"), "{text}");
    let sessions = cli_ok(&cfg, &["export", "sessions"]);
    assert_eq!(
        String::from_utf8(sessions).unwrap().lines().count(),
        2,
        "sessions are kept six years (the purged statements' session and the new one)"
    );

    // The purge applied the same hold: nothing new. Without it, the release is recorded.
    assert_eq!(records_of(&store, "LegalHoldPlaced").len(), 1);
    cfg.extra = "[retention]\nstatements = \"1s\"\n".into();
    let done = String::from_utf8(cli_ok(&cfg, &["audit", "purge"])).unwrap();
    assert!(done.contains("released (recorded)"), "{done}");
    let released = records_of(&store, "LegalHoldReleased");
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["hold_id"], placed[0]["hold_id"]);
    assert_eq!(cfg.cli(&["audit", "verify"]).status.code(), Some(0));
}
