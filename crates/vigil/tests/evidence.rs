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
    let capture = closed_capture(&cfg, &first);
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

// Evidence that says what happened (issue 12): each artifact's documented columns are filled
// from what the records know, refused and interrupted statements are counted, failed logins
// have an artifact. Only the CLI's and the API's text is used (no library types), so that the
// tests run, and fail, against a gateway without these changes.

/// `vigil export ARTIFACT --format json ARGS…`: the rows as JSON objects.
fn export_json(cfg: &VigilConfig, artifact: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["export", artifact, "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&cli_ok(cfg, &all)).unwrap()
}

/// The CSV export of `artifact` reads back as its JSON export (typed by the artifact's columns).
fn csv_reads_as_json(cfg: &VigilConfig, artifact: &str) {
    use vigil_audit::export::{read_rows, Artifact, Format};
    let typed = Artifact::parse(artifact).unwrap_or_else(|| panic!("no artifact {artifact}"));
    let read = |format: Format| {
        let bytes = cli_ok(cfg, &["export", artifact, "--format", format.as_str()]);
        let mut rows = Vec::new();
        read_rows(format, typed, &bytes[..], &mut |_, row| {
            rows.push(row);
            Ok(())
        })
        .unwrap();
        rows
    };
    let json = read(Format::Json);
    assert!(!json.is_empty(), "{artifact}");
    assert_eq!(read(Format::Csv), json, "{artifact}: CSV and JSON differ");
}

/// The API's export is the CLI's, byte for byte.
fn api_serves_what_the_cli_writes(cfg: &VigilConfig, vigil: &Vigil, artifact: &str) {
    let api = format!("http://127.0.0.1:{}", vigil.api_port);
    for format in ["jsonl", "csv"] {
        let (code, body) = curl(
            &api,
            &format!("/api/v1/exports/{artifact}?since=1h&format={format}"),
            AUDITOR_TOKEN,
        );
        assert_eq!(code, "200", "{}", String::from_utf8_lossy(&body));
        let cli = cli_ok(
            cfg,
            &["export", artifact, "--since", "1h", "--format", format],
        );
        assert_eq!(body, cli, "{artifact} {format}");
    }
}

/// psql through Vigil with `vigil.reason` set (the request's justification).
fn psql_with_reason(vigil: &Vigil, user: &str, token: &str, reason: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1"])
        .args(["-p", &vigil.port.to_string(), "-d", "ehr", "-U", user])
        .args(["-c", "SELECT 1"])
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", "disable")
        .env(
            "PGOPTIONS",
            format!("-c vigil.reason={}", reason.replace(' ', "\\ ")),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `vigil request ACTION ID --reason R --as alice` through the API, with the admin token.
fn decide(vigil: &Vigil, action: &str, id: &str, reason: &str) {
    let out = Command::new(vigil_bin())
        .args(["request", action, id, "--reason", reason, "--as", "alice"])
        .env(
            "VIGIL_API_URL",
            format!("http://127.0.0.1:{}", vigil.api_port),
        )
        .env("VIGIL_API_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "request {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The columns of `row` that are null.
fn empty_columns<'r>(row: &'r serde_json::Value, columns: &[&'r str]) -> Vec<&'r str> {
    columns
        .iter()
        .copied()
        .filter(|c| row.get(*c).is_none_or(serde_json::Value::is_null))
        .collect()
}

#[test]
fn approvals_rows_name_the_requester_and_say_what_was_asked_and_decided() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        (
            "etl".into(),
            "connections = [\"ehr\"]\ngroups = [\"jit\"]".into(),
        ),
        (
            "alice".into(),
            "kind = \"human\"\ngroups = [\"dba\"]".into(),
        ),
    ];
    cfg.policies = r#"
[[policies]]
name = "etl-on-approval"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["*"]
[policies.approval]
approver_groups = ["dba"]
max_duration = "1h"
mode = "fail"
"#
    .into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    // Asked at connect time, with a justification; approved by alice; then revoked.
    let (ok, err) = psql_with_reason(&vigil, "etl", &token, "ticket OPS-7 backfill");
    assert!(!ok, "no grant yet");
    let id = err
        .split("access request ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    decide(&vigil, "approve", &id, "OPS-7 checked");
    assert!(
        psql_with_reason(&vigil, "etl", &token, "ticket OPS-7 backfill").0,
        "approved"
    );
    decide(&vigil, "revoke", &id, "backfill done");
    let store = cfg.store_path();
    eventually("both decisions", || {
        (records_of(&store, "AccessDecided").len() == 2).then_some(())
    });
    let issued = records_of(&store, "GrantIssued");
    let grant = issued
        .iter()
        .find(|g| g["request_id"] == id.as_str())
        .expect("the approval's grant");

    let rows = export_json(&cfg, "approvals", &[]);
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let (asked, approved, revoked) = (&rows[0], &rows[1], &rows[2]);
    for row in &rows {
        assert_eq!(row["request_id"], id.as_str());
        // The requester on every row: a decision's record is made by the approver.
        assert_eq!(row["identity"], "etl", "{row}");
        assert_eq!(row["identity_kind"], "machine", "{row}");
        assert_eq!(row["connection"], "ehr", "{row}");
    }
    assert_eq!(asked["event"], "requested");
    assert_eq!(asked["justification"], "ticket OPS-7 backfill");
    assert_eq!(asked["requested_duration"], 3600, "seconds, capped at 1h");
    assert_eq!(asked["policy"], "etl-on-approval");
    assert_eq!(asked["subject"], "access");
    assert_eq!(asked["status"], "pending");
    assert_eq!(asked["scope_digest"], grant["scope_digest"]);
    let asked_columns = [
        "seq",
        "hash",
        "at",
        "event",
        "request_id",
        "identity",
        "identity_kind",
        "connection",
        "justification",
        "requested_duration",
        "expires_at",
        "scope_digest",
        "fields",
        "policy",
        "subject",
        "status",
    ];
    assert!(empty_columns(asked, &asked_columns).is_empty(), "{asked}");

    assert_eq!(approved["event"], "decided");
    assert_eq!(approved["decision"], "approve");
    assert_eq!(approved["decided_by"], "alice");
    assert_eq!(approved["decision_reason"], "OPS-7 checked");
    assert_eq!(approved["grant_id"], grant["grant_id"]);
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approver_auth"], "admin_token");
    let decided_columns = [
        "seq",
        "hash",
        "at",
        "event",
        "request_id",
        "identity",
        "identity_kind",
        "connection",
        "decision",
        "decided_by",
        "decision_reason",
        "fields",
        "status",
        "approver_auth",
    ];
    assert!(
        empty_columns(approved, &decided_columns).is_empty(),
        "{approved}"
    );
    assert!(empty_columns(&approved.clone(), &["grant_id"]).is_empty());
    assert_eq!(revoked["decision"], "revoke");
    assert_eq!(revoked["decision_reason"], "backfill done");
    assert_eq!(revoked["status"], "revoked");
    assert!(
        empty_columns(revoked, &decided_columns).is_empty(),
        "{revoked}"
    );

    // Filtering by the requester finds every row of its request; the approver is not the
    // subject of any.
    assert_eq!(
        export_json(&cfg, "approvals", &["--identity", "etl"]).len(),
        3
    );
    assert!(export_json(&cfg, "approvals", &["--identity", "alice"]).is_empty());
    csv_reads_as_json(&cfg, "approvals");
    api_serves_what_the_cli_writes(&cfg, &vigil, "approvals");
}

/// A policy that reads anything and may sleep, nothing else.
const READER_POLICY: &str = r#"
[[policies]]
name = "reader"
groups = ["testers"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["*"]
functions = ["pg_sleep"]
"#;

#[test]
fn refused_and_interrupted_statements_are_counted_and_shown_with_their_rule() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.policies = READER_POLICY.into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let store = cfg.store_path();

    // A session whose only statement is refused.
    let (ok, _, err) = vigil.psql("etl", &token, "CREATE TABLE t (x int)");
    assert!(!ok && err.contains("Vigil refused"), "{err}");
    let denial = eventually("the denial", || {
        records_of(&store, "PolicyDenied").into_iter().next()
    });
    let refused_session = denial["session_id"].as_str().unwrap().to_string();
    let rule = denial["rule"].as_str().unwrap().to_string();
    // The denial is the refused statement's only record.
    assert!(["StatementStarted", "StatementFinished"]
        .iter()
        .flat_map(|kind| records_of(&store, kind))
        .all(|r| r["session_id"] != refused_session.as_str()));

    // A session whose statement is cut off by the revocation of its grant.
    let sleeper = Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1"])
        .args(["-p", &vigil.port.to_string(), "-d", "ehr", "-U", "etl"])
        .args(["-c", "SELECT pg_sleep(30)"])
        .env("PGPASSWORD", &token)
        .env("PGSSLMODE", "disable")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = eventually("the long statement", || {
        records_of(&store, "StatementStarted")
            .into_iter()
            .find(|s| s["text"].as_str().unwrap_or("").contains("pg_sleep"))
    });
    let interrupted_session = sleeping["session_id"].as_str().unwrap().to_string();
    let grants = String::from_utf8(cli_ok(&cfg, &["grant", "list", "--json"])).unwrap();
    let grant: serde_json::Value = serde_json::from_str(grants.lines().next().unwrap()).unwrap();
    cli_ok(
        &cfg,
        &[
            "grant",
            "revoke",
            grant["id"].as_str().unwrap(),
            "--reason",
            "drill",
        ],
    );
    let status = sleeper.wait_with_output().unwrap().status;
    assert!(!status.success(), "the statement was cut off");
    let ends = eventually("both sessions' ends", || {
        let ends = records_of(&store, "SessionEnded");
        (ends.len() == 2).then_some(ends)
    });
    let end_of = |id: &str| ends.iter().find(|e| e["session_id"] == id).unwrap().clone();
    let refused_end = end_of(&refused_session);
    assert_eq!(
        (
            &refused_end["statements"],
            &refused_end["errors"],
            &refused_end["refused"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{refused_end}"
    );
    let cut_end = end_of(&interrupted_session);
    assert_eq!(cut_end["reason"], "grant_revoked");
    assert_eq!(
        (&cut_end["statements"], &cut_end["interrupted"]),
        (&1.into(), &1.into()),
        "{cut_end}"
    );

    // `sessions list`: counts, and a column for refusals.
    let list = String::from_utf8(cli_ok(&cfg, &["sessions", "list"])).unwrap();
    assert!(list.lines().next().unwrap().contains("REFUSED"), "{list}");
    let line = list
        .lines()
        .find(|l| l.starts_with(&refused_session))
        .unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cells[6..9],
        ["1", "1", "1"],
        "statements, errors, refused: {line}"
    );
    let listed: Vec<serde_json::Value> =
        String::from_utf8(cli_ok(&cfg, &["sessions", "list", "--json"]))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let cut = listed
        .iter()
        .find(|s| s["session_id"] == interrupted_session.as_str())
        .unwrap();
    assert_eq!(
        (&cut["statements"], &cut["interrupted"]),
        (&1.into(), &1.into())
    );

    // `sessions show`: the refused statement, with its rule, in its place.
    let shown = String::from_utf8(cli_ok(&cfg, &["sessions", "show", &refused_session])).unwrap();
    assert!(
        shown.contains("1 statements (1 refused, 0 interrupted), 1 errors"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("refused by rule {rule}")) && shown.contains("CREATE TABLE t"),
        "{shown}"
    );
    let shown =
        String::from_utf8(cli_ok(&cfg, &["sessions", "show", &interrupted_session])).unwrap();
    assert!(
        shown.contains("1 statements (0 refused, 1 interrupted)") && shown.contains("interrupted"),
        "{shown}"
    );
    let detail: serde_json::Value = serde_json::from_slice(&cli_ok(
        &cfg,
        &["sessions", "show", &refused_session, "--json"],
    ))
    .unwrap();
    assert_eq!(detail["denials"][0]["denied"]["rule"], rule.as_str());
    assert_eq!(detail["denials"][0]["denied"]["statement_seq"], 1);

    // The HTTP API serves the same.
    let api = format!("http://127.0.0.1:{}", vigil.api_port);
    let (code, body) = curl(
        &api,
        &format!("/api/v1/sessions/{refused_session}"),
        ADMIN_TOKEN,
    );
    assert_eq!(code, "200");
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served["summary"]["refused"], 1);
    assert_eq!(served["summary"]["statements"], 1);
    assert_eq!(served["denials"][0]["denied"]["rule"], rule.as_str());

    // And the sessions export.
    let rows = export_json(&cfg, "sessions", &[]);
    let row_of = |id: &str| rows.iter().find(|r| r["session_id"] == id).unwrap();
    assert_eq!(
        (
            &row_of(&refused_session)["statements"],
            &row_of(&refused_session)["refused"]
        ),
        (&1.into(), &1.into())
    );
    assert_eq!(
        (
            &row_of(&interrupted_session)["statements"],
            &row_of(&interrupted_session)["interrupted"]
        ),
        (&1.into(), &1.into())
    );
}

#[test]
fn failed_logins_have_an_export_a_listing_and_a_place_in_bundles() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let forged = "vgt_forged-Token-Zq81";
    assert!(!vigil.psql("etl", forged, "SELECT 1").0);
    assert!(!vigil.psql("mallory", &token, "SELECT 1").0);
    let store = cfg.store_path();
    let failed = eventually("two AuthFailed records", || {
        let f = records_of(&store, "AuthFailed");
        (f.len() == 2).then_some(f)
    });

    let rows = export_json(&cfg, "auth_failures", &[]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for (row, record) in rows.iter().zip(&failed) {
        assert_eq!(row["seq"], record["seq"]);
        assert_eq!(row["reason"], record["reason"]);
        assert_eq!(row["user"], record["user"]);
        assert_eq!(row["connection"], "ehr");
        assert_eq!(row["detail"], record["detail"]);
        assert!(
            row["client_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{row}"
        );
    }
    assert_eq!(rows[0]["reason"], "unknown_token");
    assert_eq!(rows[0]["user"], "etl");
    assert_eq!(rows[1]["user"], "mallory");
    // Never a token, in any form.
    for format in ["json", "csv"] {
        let text = String::from_utf8(cli_ok(
            &cfg,
            &["export", "auth_failures", "--format", format],
        ))
        .unwrap();
        assert!(
            !text.contains(forged) && !text.contains(&token),
            "{format}: {text}"
        );
    }
    assert_eq!(
        export_json(&cfg, "auth_failures", &["--identity", "mallory"]).len(),
        1,
        "the user given is who the attempt was for"
    );
    csv_reads_as_json(&cfg, "auth_failures");
    api_serves_what_the_cli_writes(&cfg, &vigil, "auth_failures");

    // The CLI's listing: newest first, never the token.
    let listing = String::from_utf8(cli_ok(&cfg, &["audit", "auth-failures"])).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(
        lines[1].contains("mallory") && lines[2].contains("unknown_token"),
        "{listing}"
    );
    assert!(!listing.contains(forged) && !listing.contains(&token));
    let listed: Vec<serde_json::Value> = String::from_utf8(cli_ok(
        &cfg,
        &["audit", "auth-failures", "--json", "--limit", "1"],
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(
        listed,
        vec![rows[1].clone()],
        "the newest, as the export has it"
    );

    // In evidence bundles, checked against the chain like every artifact.
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
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify", "--json"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["rows"]["auth_failures"], 2, "{verdict}");
}

#[test]
fn masking_rows_name_the_table_the_values_came_from() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE patients (id int, ssn text, notes text);
         INSERT INTO patients VALUES (1, '123-45-6789', 'callback SSN 234-56-7890')",
    );
    let mut cfg = VigilConfig::new(&pg);
    cfg.extra = r#"
[masking]
hmac_key = "env:VIGIL_TEST_MASK_KEY"

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[masking.detectors]
skip_columns = ["*.id"]
"#
    .into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start_with_env(
        &cfg,
        &[(
            "VIGIL_TEST_MASK_KEY",
            "test-masking-key-0123456789abcdef0123456789",
        )],
    );
    let (ok, out, err) = vigil.psql("etl", &token, "SELECT id, ssn, notes FROM patients");
    assert!(ok, "{err}");
    assert!(
        !out.contains("123-45-6789") && !out.contains("234-56-7890"),
        "{out}"
    );
    // A computed column, from stored data (the detectors scan it).
    let (ok, out, err) = vigil.psql("etl", &token, "SELECT lower(notes) AS note FROM patients");
    assert!(ok && !out.contains("234-56-7890"), "{out}{err}");
    let store = cfg.store_path();
    eventually("both sessions' ends", || {
        (records_of(&store, "SessionEnded").len() == 2).then_some(())
    });

    let rows = export_json(&cfg, "masking", &[]);
    let row = |column: &str| {
        rows.iter()
            .find(|r| r["column"] == column)
            .unwrap_or_else(|| panic!("no masking of {column}: {rows:#?}"))
    };
    let ssn = row("public.patients.ssn");
    assert_eq!(ssn["table"], "public.patients", "schema-qualified: {ssn}");
    assert_eq!(
        (
            &ssn["rule"],
            &ssn["entity"],
            &ssn["operator"],
            &ssn["count"]
        ),
        (&"ssn".into(), &"ssn".into(), &"partial".into(), &1.into())
    );
    assert!(ssn["detector"].is_null(), "a column rule: {ssn}");
    let notes = row("public.patients.notes");
    assert_eq!(notes["table"], "public.patients");
    let detector = notes["detector"]
        .as_str()
        .unwrap_or_else(|| panic!("{notes}"));
    assert_eq!(notes["rule"], format!("detector:{detector}").as_str());
    // A computed column comes from no table.
    assert!(row("note")["table"].is_null());
    assert!(rows.iter().all(|r| r["entity"].is_string()), "{rows:#?}");

    // The session's summary names the same columns, once each.
    let sessions = export_json(&cfg, "sessions", &[]);
    assert_eq!(
        sessions[0]["masked_columns"],
        serde_json::json!(["public.patients.notes", "public.patients.ssn"])
    );
    csv_reads_as_json(&cfg, "masking");
    api_serves_what_the_cli_writes(&cfg, &vigil, "masking");
}

#[test]
fn a_bundle_made_before_these_columns_still_verifies() {
    // Made by the gateway of the first export revision (vigil demo: masking, refusals, an
    // approval, a refused login), `--replay none`; public-key.pem exported apart.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let out = Command::new(vigil_bin())
        .args(["evidence", "verify", "--json", "--public-key"])
        .arg(format!("{fixtures}/bundle-revision1.pub"))
        .arg(format!("{fixtures}/bundle-revision1.tar.gz"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["export_revision"], 1, "{verdict}");
    assert_eq!(verdict["rows"]["approvals"], 3);
    assert!(verdict["rows"].get("auth_failures").is_none());
}
