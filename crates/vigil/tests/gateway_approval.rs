//! Just-in-time approval with real processes: `vigil serve`, a throwaway PostgreSQL, a real
//! OpenID provider issuing the human approvers' tokens, tokio-postgres clients, the `vigil
//! request` CLI and a local webhook receiver.

mod support;

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use vigil_identity::testkit::{OidcTestOptions, OidcTestProvider, TestClient};

const MACHINE_AND_HUMANS: &[(&str, &str)] = &[
    ("etl", "connections = [\"ehr\"]\ngroups = [\"jit\"]"),
    ("alice", "kind = \"human\"\ngroups = [\"dba\"]"),
    ("bob", "kind = \"human\"\ngroups = [\"security\"]"),
    ("mallory", "kind = \"human\"\ngroups = [\"finance\"]"),
];

fn approval_policy(approval: &str) -> String {
    format!(
        r#"
[[policies]]
name = "etl-on-approval"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["*"]
[policies.approval]
{approval}
"#
    )
}

fn config(pg: &PgCluster, approval: &str) -> VigilConfig {
    let mut cfg = VigilConfig::new(pg);
    cfg.identities = MACHINE_AND_HUMANS
        .iter()
        .map(|(n, e)| (n.to_string(), e.to_string()))
        .collect();
    cfg.policies = approval_policy(approval);
    cfg
}

async fn api(
    vigil: &Vigil,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", vigil.api_port);
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn decide(vigil: &Vigil, token: &str, id: &str, action: &str, reason: &str) -> (u16, Value) {
    api(
        vigil,
        token,
        reqwest::Method::POST,
        &format!("/api/v1/access-requests/{id}/{action}"),
        Some(json!({ "reason": reason })),
    )
    .await
}

/// Connects; the error's SQLSTATE and message if refused.
async fn connect(
    vigil: &Vigil,
    user: &str,
    token: &str,
    reason: &str,
) -> Result<tokio_postgres::Client, (String, String)> {
    let conn = format!(
        "{} options='-c vigil.reason={}'",
        vigil.conn_string(user, token),
        reason.replace(' ', "\\\\ ")
    );
    match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => {
            let db = e.as_db_error().expect("a server error");
            Err((db.code().code().to_string(), db.message().to_string()))
        }
    }
}

/// The request id a refusal names.
fn request_id(message: &str) -> String {
    let after = message.split("access request ").nth(1).expect(message);
    after.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_with_a_real_oidc_token_approves_and_the_grant_expires() {
    let options = OidcTestOptions {
        clients: ["alice", "bob", "mallory"]
            .into_iter()
            .map(TestClient::new)
            .collect(),
        ..Default::default()
    };
    let Some(idp) = OidcTestProvider::start_with_or_skip(
        "a_human_with_a_real_oidc_token_approves_and_the_grant_expires",
        options,
    ) else {
        return;
    };
    let pg = PgCluster::start();
    let mut cfg = config(
        &pg,
        "approver_groups = [\"dba\"]\nmax_duration = \"4s\"\nmode = \"fail\"",
    );
    cfg.extra = format!(
        "[[oidc_providers]]\nname = \"staff-idp\"\nissuer = \"{}\"\naudience = \"{}\"\nkind = \"human\"\nallow_insecure_http = true\n",
        idp.issuer(),
        idp.audience()
    );
    let (hook_port, received) = webhook_receiver().await;
    cfg.extra.push_str(&format!(
        "[[approvals.webhooks]]\nname = \"expiry\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = \"env:VIGIL_TEST_HOOK_SECRET\"\nevents = [\"grant_expired\"]\n"
    ));
    let etl_token = cfg.create_token("etl");
    let vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_HOOK_SECRET", "hook-secret")]);

    // Blocked: a request is raised and named, with SQLSTATE 28000.
    let (code, message) = connect(&vigil, "etl", &etl_token, "ticket OPS-7")
        .await
        .err()
        .unwrap_or_else(|| panic!("no grant yet"));
    assert_eq!(code, "28000", "{message}");
    let id = request_id(&message);
    let (status, shown) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["reason"], "ticket OPS-7");

    // Connecting again while pending reuses the request.
    let (_, again) = connect(&vigil, "etl", &etl_token, "ticket OPS-7")
        .await
        .err()
        .unwrap();
    assert_eq!(request_id(&again), id);

    // The requester cannot approve itself; a human outside the groups is refused; a
    // rationale is required.
    let (status, body) = decide(&vigil, &etl_token, &id, "approve", "me").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("own request"),
        "{body}"
    );
    let mallory = idp.token_for("mallory", None).await.unwrap();
    let (status, body) = decide(&vigil, &mallory, &id, "approve", "sure").await;
    assert_eq!(status, 403, "{body}");
    let alice = idp.token_for("alice", None).await.unwrap();
    let (status, _) = decide(&vigil, &alice, &id, "approve", " ").await;
    assert_eq!(status, 403);

    // Alice approves with her real OIDC token.
    let (status, body) = decide(&vigil, &alice, &id, "approve", "OPS-7 backfill").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    let grant_id = body["grant_id"].as_str().unwrap().to_string();

    // The retry runs under the grant; the session record cites grant and request.
    let client = connect(&vigil, "etl", &etl_token, "ticket OPS-7")
        .await
        .expect("approved");
    let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let store = cfg.store_path();
    let start = eventually("session record", || {
        records_of(&store, "SessionStarted").into_iter().next()
    });
    assert_eq!(start["grants"][0]["grant_id"], grant_id.as_str());
    assert_eq!(start["grants"][0]["source"], "approval");
    assert_eq!(start["grants"][0]["request_id"], id.as_str());

    // The grant expires (max_duration 4s): the session is ended.
    let ended = eventually("session ended by expiry", || {
        records_of(&store, "SessionEnded").into_iter().next()
    });
    assert_eq!(ended["reason"], "grant_expired", "{ended}");
    assert!(client.query_one("SELECT 1", &[]).await.is_err());

    // Approvers hear that the grant ended (JSON format, only the event asked for).
    let hooks = eventually("grant_expired webhook", || {
        let got = received.lock().unwrap().clone();
        (!got.is_empty()).then_some(got)
    });
    let body: Value = serde_json::from_slice(&hooks[0].1).unwrap();
    assert_eq!(body["event"], "grant_expired");
    assert_eq!(body["data"]["id"], id.as_str());

    let decided = records_of(&store, "AccessDecided");
    assert_eq!(decided.len(), 1, "refused attempts decide nothing");
    assert_eq!(decided[0]["approver"], "alice");
    assert_eq!(decided[0]["approver_kind"], "human");
    assert_eq!(decided[0]["approver_auth"], "oidc");
    assert_eq!(decided[0]["rationale"], "OPS-7 backfill");
    let requested = records_of(&store, "AccessRequested");
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["identity"]["name"], "etl");
    let issued = records_of(&store, "GrantIssued");
    assert_eq!(issued[0]["request_id"], id.as_str());
    let out = cfg.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What the local webhook receiver got: (signature header, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn webhook_receiver() -> (u16, Received) {
    use axum::http::HeaderMap;
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let sig = headers["vigil-signature"].to_str().unwrap().to_string();
                g.lock().unwrap().push((sig, body.to_vec()));
                axum::http::StatusCode::NO_CONTENT
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

fn cli(cfg: &VigilConfig, vigil: &Vigil, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(vigil_bin())
        .args(args)
        .env(
            "VIGIL_API_URL",
            format!("http://127.0.0.1:{}", vigil.api_port),
        )
        .env("VIGIL_API_TOKEN", ADMIN_TOKEN)
        .env_remove("VIGIL_APPROVER_TOKEN")
        .current_dir(cfg.dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn pending_id(vigil: &Vigil) -> String {
    for _ in 0..100 {
        let (_, list) = api(
            vigil,
            ADMIN_TOKEN,
            reqwest::Method::GET,
            "/api/v1/access-requests?status=pending",
            None,
        )
        .await;
        if let Some(id) = list["access_requests"][0]["id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_get_a_quorum_or_a_denial_and_pending_requests_expire() {
    let pg = PgCluster::start();
    let (hook_port, received) = webhook_receiver().await;
    let mut cfg = config(
        &pg,
        "approver_groups = [\"dba\", \"security\"]\nmin_approvals = 2\nrequire_all_groups = true\nmode = \"wait\"\nwait_timeout = \"30s\"\npending_expiry = \"5s\"",
    );
    cfg.extra = format!(
        "[[approvals.webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = \"env:VIGIL_TEST_HOOK_SECRET\"\nformat = \"slack\"\n"
    );
    let etl_token = cfg.create_token("etl");
    let vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_HOOK_SECRET", "hook-secret")]);
    let vigil = Arc::new(vigil);

    // Quorum: the client waits; one group's approval is not enough; both are.
    let waiting = {
        let (v, t) = (vigil.clone(), etl_token.clone());
        tokio::spawn(async move { connect(&v, "etl", &t, "quarterly report").await })
    };
    let id = pending_id(&vigil).await;
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request",
            "approve",
            &id,
            "--reason",
            "ok by dba",
            "--as",
            "alice",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("pending"), "one approval of two: {out}");
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &["request", "approve", &id, "--reason", "ok", "--as", "alice"],
    );
    assert!(!ok && out.contains("already decided"), "{out}");
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request",
            "approve",
            &id,
            "--reason",
            "no rationale needed?",
        ],
    );
    assert!(
        !ok && out.contains("--as"),
        "the admin token must name the human: {out}"
    );
    assert!(!waiting.is_finished(), "still waiting for the second group");
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request",
            "approve",
            &id,
            "--reason",
            "ok by security",
            "--as",
            "bob",
        ],
    );
    assert!(ok && out.contains("approved"), "{out}");
    let client = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .expect("the waiting client proceeds once approved");
    client.query_one("SELECT 1", &[]).await.unwrap();

    // Revocation ends the live session.
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request", "revoke", &id, "--reason", "done", "--as", "alice",
        ],
    );
    assert!(ok, "{out}");
    let store = cfg.store_path();
    let ended = eventually("session ended by revocation", || {
        records_of(&store, "SessionEnded").into_iter().next()
    });
    assert_eq!(ended["reason"], "grant_revoked");

    // Denial: the waiting client fails, naming the request.
    let waiting = {
        let (v, t) = (vigil.clone(), etl_token.clone());
        tokio::spawn(async move { connect(&v, "etl", &t, "again").await })
    };
    let id2 = pending_id(&vigil).await;
    assert_ne!(id2, id);
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request",
            "deny",
            &id2,
            "--reason",
            "not today",
            "--as",
            "bob",
        ],
    );
    assert!(ok && out.contains("denied"), "{out}");
    let (code, message) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .err()
        .unwrap_or_else(|| panic!("denied"));
    assert_eq!(code, "28000");
    assert!(
        message.contains(&id2) && message.contains("denied"),
        "{message}"
    );

    // Nobody decides: the pending request expires (5s) and the waiting client is told.
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request",
            "create",
            "--identity",
            "etl",
            "--connection",
            "ehr",
            "--reason",
            "ahead of time",
        ],
    );
    assert!(ok, "{out}");
    let id3 = pending_id(&vigil).await;
    eventually("expiry", || {
        records_of(&store, "AccessRequestExpired")
            .into_iter()
            .find(|r| r["request_id"] == id3.as_str())
    });
    let (ok, out) = cli(&cfg, &vigil, &["request", "show", &id3]);
    assert!(ok && out.contains("expired"), "{out}");

    // Webhooks: signed, Slack-formatted, each delivery recorded.
    let hooks = eventually("webhook deliveries", || {
        let got = received.lock().unwrap().clone();
        (got.len() >= 6).then_some(got)
    });
    let now = vigil_core::Timestamp::now().as_micros() / 1_000_000;
    for (sig, body) in &hooks {
        assert!(vigil_approval::webhook::verify(
            b"hook-secret",
            sig,
            body,
            now,
            Duration::from_secs(60)
        ));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert!(v["text"].as_str().unwrap().contains("Review and approve"));
    }
    let delivered = eventually("delivery records", || {
        let d = records_of(&store, "WebhookDelivery");
        (d.len() >= 6).then_some(d)
    });
    assert!(delivered.iter().all(|d| d["delivered"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_runs_once_when_approved_and_is_held_again_when_resent() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = MACHINE_AND_HUMANS
        .iter()
        .map(|(n, e)| (n.to_string(), e.to_string()))
        .collect();
    cfg.policies = r#"
[[policies]]
name = "etl-with-review"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["*"]
[policies.statement_review]
statements = ["ddl", "delete_without_where", "update_without_where"]
approver_groups = ["dba"]
"#
    .into();
    let etl_token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let client = connect(&vigil, "etl", &etl_token, "migration")
        .await
        .expect("a standing grant");
    client.simple_query("SELECT 1").await.expect("not held");

    // DDL is held: refused naming a request; nothing ran.
    let ddl = "CREATE TABLE held_t (secret text DEFAULT 'x-literal-9')";
    let err = client.simple_query(ddl).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    let id = request_id(db.message());
    assert_eq!(
        pg.sql("postgres", "SELECT to_regclass('held_t') IS NULL"),
        "t"
    );

    // The reviewer sees the literal-free text.
    let (_, shown) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    let text = shown["subject"]["statement"]["text"].as_str().unwrap();
    assert!(
        text.contains("CREATE TABLE") && !text.contains("x-literal-9"),
        "{text}"
    );

    let (status, body) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::POST,
        &format!("/api/v1/access-requests/{id}/approve"),
        Some(json!({"reason": "MIG-3", "as": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");

    // Approved: it runs once. Sent again, it is held again under a new request.
    client
        .simple_query(ddl)
        .await
        .expect("approved statement runs");
    assert_eq!(
        pg.sql("postgres", "SELECT to_regclass('held_t') IS NOT NULL"),
        "t"
    );
    client
        .simple_query("DROP TABLE IF EXISTS nothing_here")
        .await
        .ok();
    let err = client.simple_query(ddl).await.unwrap_err();
    let again = request_id(err.as_db_error().unwrap().message());
    assert_ne!(again, id, "an approval is used once");

    // DELETE with WHERE runs; without WHERE it is held.
    client
        .simple_query("DELETE FROM held_t WHERE secret = 'y'")
        .await
        .expect("qualified delete runs");
    let err = client.simple_query("DELETE FROM held_t").await.unwrap_err();
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("access request"));

    // The extended protocol is held too (on the statement's literal-free text).
    let err = client
        .execute("UPDATE held_t SET secret = $1", &[&"z"])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("access request"));

    let store = cfg.store_path();
    let requested = records_of(&store, "AccessRequested");
    assert!(requested.iter().all(|r| r["subject"] == "statement"));
    assert!(!serde_json::to_string(&requested)
        .unwrap()
        .contains("x-literal-9"));
    let refused = records_of(&store, "PolicyDenied");
    assert!(
        refused.iter().any(|r| r["rule"] == "statement_review"),
        "{refused:?}"
    );
}
