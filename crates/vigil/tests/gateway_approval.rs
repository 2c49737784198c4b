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

/// A configuration with the machine `etl` and the humans of [`MACHINE_AND_HUMANS`].
fn with_humans(pg: &PgCluster) -> VigilConfig {
    let mut cfg = VigilConfig::new(pg);
    cfg.identities = MACHINE_AND_HUMANS
        .iter()
        .map(|(n, e)| (n.to_string(), e.to_string()))
        .collect();
    cfg
}

fn config(pg: &PgCluster, approval: &str) -> VigilConfig {
    let mut cfg = with_humans(pg);
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
    let mut cfg = with_humans(&pg);
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

// --- approval on part of a scope (elevation), held statements that wait, literals for
// --- authorised reviewers, approvals kept across restarts, allowed hours ------------------

/// A standing read grant on everything, and writes to `public.t` on approval.
fn elevation_policies(approval: &str) -> String {
    format!(
        r#"
[[policies]]
name = "etl-reads"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["*"]

[[policies]]
name = "etl-writes"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session"]
relations = ["public.t"]
[policies.approval]
approver_groups = ["dba"]
{approval}
"#
    )
}

/// Connects and keeps the notices the client receives.
async fn connect_noticing(
    vigil: &Vigil,
    user: &str,
    token: &str,
    reason: &str,
) -> (tokio_postgres::Client, Arc<Mutex<Vec<String>>>) {
    let conn = format!(
        "{} options='-c vigil.reason={}'",
        vigil.conn_string(user, token),
        reason.replace(' ', "\\\\ ")
    );
    let (client, mut connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                seen.lock().unwrap().push(n.message().to_string());
            }
        }
    });
    (client, notices)
}

/// The SQLSTATE, message and detail of a refused statement.
fn refusal_of(e: &tokio_postgres::Error) -> (String, String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().unwrap_or_default().to_string(),
    )
}

async fn show(vigil: &Vigil, token: &str, id: &str) -> Value {
    let (status, shown) = api(
        vigil,
        token,
        reqwest::Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    shown
}

/// Every byte of the store's files (database and WAL), for "never stored" checks.
fn store_bytes(cfg: &VigilConfig) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(cfg.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_beyond_the_standing_grant_asks_for_an_elevation_that_ends_on_its_own() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE t (id int, v text)");
    let mut cfg = with_humans(&pg);
    cfg.policies = elevation_policies("max_duration = \"5s\"\nmode = \"fail\"");
    let etl_token = cfg.create_token("etl");

    // The tools say so before anything runs.
    let out = cfg.cli(&[
        "policy",
        "test",
        "--identity",
        "etl",
        "--connection",
        "ehr",
        "INSERT INTO t VALUES (1, 'x')",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("needs approval: elevation to policy \"etl-writes\"")
            && text.contains("rule command_class"),
        "{text}"
    );
    let out = cfg.cli(&[
        "policy",
        "test",
        "--identity",
        "etl",
        "--connection",
        "ehr",
        "SELECT id FROM t",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = cfg.cli(&["policy", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("note: policy \"etl-writes\": elevation: identity \"etl\" on \"ehr\" holds standing grants (\"etl-reads\")"),
        "{text}"
    );

    let vigil = Vigil::start(&cfg);
    let client = connect(&vigil, "etl", &etl_token, "ticket OPS-9")
        .await
        .expect("a standing grant");
    client.simple_query("SELECT count(*) FROM t").await.unwrap();

    // A write: refused, naming the request it raised; nothing ran.
    let insert = "INSERT INTO t VALUES (1, 'secret-literal-5')";
    let err = client.simple_query(insert).await.unwrap_err();
    let (code, message, detail) = refusal_of(&err);
    assert_eq!(code, "42501", "{message}");
    assert!(message.contains("policy \"etl-writes\""), "{message}");
    let id = request_id(&message);
    assert!(
        detail.contains("rule approval_required") && detail.contains(&id),
        "{detail}"
    );
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "0");
    let shown = show(&vigil, ADMIN_TOKEN, &id).await;
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["reason"], "ticket OPS-9", "the session's reason");
    let scope = &shown["subject"]["scope"];
    assert_eq!(scope["policy"], "etl-writes");
    let asked = scope["text"].as_str().unwrap();
    assert!(
        asked.contains("INSERT INTO t") && !asked.contains("secret-literal-5"),
        "{asked}"
    );

    // Sent again while pending: the same request.
    let err = client.simple_query(insert).await.unwrap_err();
    assert_eq!(request_id(&refusal_of(&err).1), id);

    let (status, body) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::POST,
        &format!("/api/v1/access-requests/{id}/approve"),
        Some(json!({"reason": "OPS-9 fix", "as": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let grant_id = body["grant_id"].as_str().unwrap().to_string();

    // Approved: the live session takes the grant on, and the write runs under it.
    client.simple_query(insert).await.expect("elevated");
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "1");
    // A new session holds it too, from its start.
    let other = connect(&vigil, "etl", &etl_token, "ticket OPS-9")
        .await
        .unwrap();
    other
        .simple_query("UPDATE t SET v = 'y' WHERE id = 1")
        .await
        .expect("the approved grant");

    let store = cfg.store_path();
    let added = eventually("SessionGrantAdded", || {
        records_of(&store, "SessionGrantAdded").into_iter().next()
    });
    assert_eq!(added["grant_id"], grant_id.as_str());
    assert_eq!(added["request_id"], id.as_str());
    assert_eq!(added["policy"], "etl-writes");
    let session = added["session_id"].as_str().unwrap().to_string();
    let ran = eventually("the insert's record", || {
        records_of(&store, "StatementStarted")
            .into_iter()
            .find(|r| r["text"].as_str().unwrap_or("").starts_with("INSERT"))
    });
    assert_eq!(ran["session_id"], session.as_str());
    assert_eq!(ran["grant_id"], grant_id.as_str(), "{ran}");
    assert_eq!(ran["request_id"], id.as_str());
    let denied = records_of(&store, "PolicyDenied");
    assert!(denied
        .iter()
        .all(|d| d["rule"] == "approval_required" && d["request_id"] == id.as_str()));
    let requested = records_of(&store, "AccessRequested");
    assert_eq!(requested.len(), 1, "one request for both attempts");
    assert_eq!(requested[0]["subject"], "scope");
    assert_eq!(requested[0]["requesting_session"], session.as_str());
    assert_eq!(requested[0]["reason"], "ticket OPS-9");
    let starts = records_of(&store, "SessionStarted");
    assert!(starts.iter().any(|s| s["grants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["grant_id"] == grant_id.as_str() && g["request_id"] == id.as_str())));

    // The elevated grant expires (5s): the sessions keep their standing reads; writes ask again.
    eventually("the elevated grant's expiry", || {
        records_of(&store, "GrantExpired")
            .into_iter()
            .find(|g| g["grant_id"] == grant_id.as_str())
    });
    client
        .simple_query("SELECT count(*) FROM t")
        .await
        .expect("the session goes on under its standing grant");
    let err = client.simple_query(insert).await.unwrap_err();
    let again = request_id(&refusal_of(&err).1);
    assert_ne!(again, id, "a new request once the grant expired");
    assert!(
        !records_of(&store, "SessionEnded")
            .iter()
            .any(|e| e["session_id"] == session.as_str()),
        "the elevation's end does not end the session"
    );
    assert!(!serde_json::to_string(&audit_records(&store))
        .unwrap()
        .contains("secret-literal-5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elevation_in_wait_mode_holds_the_statement_until_decided_and_revocation_spares_the_session(
) {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE t (id int, v text)");
    let mut cfg = with_humans(&pg);
    cfg.policies = elevation_policies("mode = \"wait\"\nwait_timeout = \"30s\"");
    let etl_token = cfg.create_token("etl");
    let vigil = Arc::new(Vigil::start(&cfg));
    let (client, notices) = connect_noticing(&vigil, "etl", &etl_token, "ticket OPS-11").await;
    let client = Arc::new(client);

    // Extended protocol: the Bind is held, the client waits and is told why.
    let held = {
        let c = client.clone();
        tokio::spawn(async move {
            c.execute("INSERT INTO t VALUES ($1, $2)", &[&7i32, &"p-value"])
                .await
        })
    };
    let id = pending_id(&vigil).await;
    let notice = eventually("the notice", || {
        notices
            .lock()
            .unwrap()
            .iter()
            .find(|n| n.contains(&id))
            .cloned()
    });
    assert!(notice.contains("etl-writes"), "{notice}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "held until decided");
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "0");
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request", "approve", &id, "--reason", "OPS-11", "--as", "alice",
        ],
    );
    assert!(ok && out.contains("approved"), "{out}");
    let rows = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .expect("runs once approved");
    assert_eq!(rows, 1);
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "1");

    // Revoking the elevation: the session stops using it but goes on with its standing grant.
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request", "revoke", &id, "--reason", "done", "--as", "alice",
        ],
    );
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .simple_query("SELECT count(*) FROM t")
        .await
        .expect("the standing grant remains");
    // A write asks again; a denial ends the wait with a clear error naming the request.
    let held = {
        let c = client.clone();
        tokio::spawn(async move { c.simple_query("DELETE FROM t WHERE id = 7").await })
    };
    let id2 = pending_id(&vigil).await;
    assert_ne!(id2, id);
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &["request", "deny", &id2, "--reason", "no", "--as", "alice"],
    );
    assert!(ok, "{out}");
    let err = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let (code, message, _) = refusal_of(&err);
    assert_eq!(code, "42501");
    assert!(
        message.contains(&id2) && message.contains("denied"),
        "{message}"
    );
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "1");
    let store = cfg.store_path();
    assert!(records_of(&store, "SessionEnded").is_empty(), "still open");
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_waits_for_its_reviewer_who_alone_may_see_its_literals() {
    let options = OidcTestOptions {
        clients: ["alice", "bob"].into_iter().map(TestClient::new).collect(),
        ..Default::default()
    };
    let Some(idp) = OidcTestProvider::start_with_or_skip(
        "a_held_statement_waits_for_its_reviewer_who_alone_may_see_its_literals",
        options,
    ) else {
        return;
    };
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        (
            "etl".into(),
            "connections = [\"ehr\"]\ngroups = [\"jit\"]".into(),
        ),
        (
            "alice".into(),
            "kind = \"human\"\ngroups = [\"dba\", \"dba-leads\"]".into(),
        ),
        ("bob".into(), "kind = \"human\"\ngroups = [\"dba\"]".into()),
    ];
    cfg.policies = r#"
[[policies]]
name = "etl-with-review"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["*"]
[policies.statement_review]
statements = ["ddl", "delete_without_where"]
approver_groups = ["dba"]
mode = "wait"
wait_timeout = "30s"
reveal_literals_groups = ["dba-leads"]
"#
    .into();
    let (hook_port, received) = webhook_receiver().await;
    cfg.extra = format!(
        "[[oidc_providers]]\nname = \"staff-idp\"\nissuer = \"{}\"\naudience = \"{}\"\nkind = \"human\"\nallow_insecure_http = true\n\n[[approvals.webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = \"env:VIGIL_TEST_HOOK_SECRET\"\n",
        idp.issuer(),
        idp.audience()
    );
    let etl_token = cfg.create_token("etl");
    let vigil = Arc::new(Vigil::start_with_env(
        &cfg,
        &[("VIGIL_TEST_HOOK_SECRET", "hook-secret")],
    ));
    let (client, notices) = connect_noticing(&vigil, "etl", &etl_token, "migration").await;
    let client = Arc::new(client);
    let ddl = "CREATE TABLE held_w (secret text DEFAULT 'x-literal-42')";
    let held = {
        let c = client.clone();
        tokio::spawn(async move { c.simple_query(ddl).await })
    };
    let id = pending_id(&vigil).await;
    eventually("the notice naming the request", || {
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains(&id) && n.contains("held"))
            .then_some(())
    });
    assert!(!held.is_finished());

    // Literals: only alice (dba-leads, her own token) sees them; bob and the admin do not.
    let alice = idp.token_for("alice", None).await.unwrap();
    let bob = idp.token_for("bob", None).await.unwrap();
    for (who, token) in [("bob", bob.as_str()), ("admin", ADMIN_TOKEN)] {
        let shown = show(&vigil, token, &id).await;
        assert_eq!(shown["literals"], "withheld", "{who}: {shown}");
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("x-literal-42"), "{who}: {text}");
        assert!(text.contains("CREATE TABLE held_w"), "{who}: {text}");
    }
    let shown = show(&vigil, &alice, &id).await;
    assert_eq!(shown["literals"], "shown", "{shown}");
    assert_eq!(
        shown["subject"]["statement"]["text_with_literals"], ddl,
        "{shown}"
    );
    // The CLI, with each approver's own token.
    let show_cli = |token: &str| {
        let out = std::process::Command::new(vigil_bin())
            .args(["request", "show", &id])
            .env(
                "VIGIL_API_URL",
                format!("http://127.0.0.1:{}", vigil.api_port),
            )
            .env("VIGIL_APPROVER_TOKEN", token)
            .env_remove("VIGIL_API_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let by_alice = show_cli(&alice);
    assert!(
        by_alice.contains("literals    CREATE TABLE held_w (secret text DEFAULT 'x-literal-42')"),
        "{by_alice}"
    );
    let by_bob = show_cli(&bob);
    assert!(
        by_bob.contains("withheld") && !by_bob.contains("x-literal-42"),
        "{by_bob}"
    );

    // Bob approves (a reviewer need not see literals): it runs, once.
    let (status, body) = decide(&vigil, &bob, &id, "approve", "MIG-7").await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .expect("runs once approved");
    assert_eq!(
        pg.sql("postgres", "SELECT to_regclass('held_w') IS NOT NULL"),
        "t"
    );
    let shown = show(&vigil, &alice, &id).await;
    assert!(
        shown["statement_approval"]["used_at"].is_string(),
        "{shown}"
    );
    assert_eq!(shown["literals"], "not_kept", "dropped once it ran");

    // Denied: the held statement fails, naming the request.
    let held = {
        let c = client.clone();
        tokio::spawn(async move { c.simple_query("DELETE FROM held_w").await })
    };
    let id2 = pending_id(&vigil).await;
    let (status, _) = decide(&vigil, &alice, &id2, "deny", "not now").await;
    assert_eq!(status, 200);
    let err = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let (code, message, _) = refusal_of(&err);
    assert_eq!(code, "42501");
    assert!(
        message.contains(&id2) && message.contains("denied"),
        "{message}"
    );

    // Evidence: who saw the literals, under which request the DDL ran; the literals
    // themselves nowhere in the store (audit trail, requests) nor in the webhooks.
    let store = cfg.store_path();
    let shown_records = records_of(&store, "StatementLiteralsShown");
    assert_eq!(shown_records.len(), 2, "API and CLI, alice only");
    assert!(shown_records.iter().all(|r| r["viewer"] == "alice"
        && r["request_id"] == id.as_str()
        && r["viewer_auth"] == "oidc"));
    let ran = eventually("the DDL's record", || {
        records_of(&store, "StatementStarted")
            .into_iter()
            .find(|r| r["text"].as_str().unwrap_or("").starts_with("CREATE TABLE"))
    });
    assert_eq!(ran["request_id"], id.as_str());
    let hooks = eventually("webhooks", || {
        let got = received.lock().unwrap().clone();
        (got.len() >= 4).then_some(got)
    });
    for (_, body) in &hooks {
        assert!(!contains(body, "x-literal-42"));
    }
    let mut vigil = Arc::try_unwrap(vigil).ok().unwrap();
    vigil.stop();
    assert!(!contains(&store_bytes(&cfg), "x-literal-42"));
    assert!(!vigil.log().contains("x-literal-42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_statement_survives_a_restart_and_still_runs_at_most_once() {
    let pg = PgCluster::start();
    let mut cfg = with_humans(&pg);
    cfg.policies = r#"
[[policies]]
name = "etl-with-review"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["*"]
[policies.statement_review]
statements = ["ddl"]
approver_groups = ["dba"]
"#
    .into();
    let etl_token = cfg.create_token("etl");
    let mut vigil = Vigil::start(&cfg);
    let ddl = "CREATE TABLE kept_t (v int)";
    let client = connect(&vigil, "etl", &etl_token, "migration")
        .await
        .unwrap();
    let err = client.simple_query(ddl).await.unwrap_err();
    let id = request_id(&refusal_of(&err).1);
    let (status, body) = decide(&vigil, ADMIN_TOKEN, &id, "approve", "ok").await;
    assert_eq!(status, 400, "the admin token must name the human: {body}");
    let (status, body) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::POST,
        &format!("/api/v1/access-requests/{id}/approve"),
        Some(json!({"reason": "MIG-8", "as": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The gateway crashes before the statement is sent again: the approval is kept.
    drop(client);
    vigil.crash();
    let vigil = Vigil::start(&cfg);
    let client = connect(&vigil, "etl", &etl_token, "migration")
        .await
        .unwrap();
    client
        .simple_query(ddl)
        .await
        .expect("the approval survived the restart");
    assert_eq!(
        pg.sql("postgres", "SELECT to_regclass('kept_t') IS NOT NULL"),
        "t"
    );
    // Used once: sent again (in this session or another), it is held again.
    client.simple_query("DROP TABLE kept_t").await.unwrap_err();
    let err = client.simple_query(ddl).await.unwrap_err();
    assert_ne!(request_id(&refusal_of(&err).1), id);
    let other = connect(&vigil, "etl", &etl_token, "migration")
        .await
        .unwrap();
    let err = other.simple_query(ddl).await.unwrap_err();
    assert_eq!(refusal_of(&err).0, "42501");

    let store = cfg.store_path();
    let ran: Vec<Value> = records_of(&store, "StatementStarted")
        .into_iter()
        .filter(|r| r["request_id"] == id.as_str())
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    let shown = show(&vigil, ADMIN_TOKEN, &id).await;
    assert_eq!(
        shown["statement_approval"]["used_session"],
        ran[0]["session_id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_outside_the_allowed_hours_are_refused_and_inside_accepted() {
    // The window is the current UTC weekday (open) or every other day (closed); not within a
    // minute of midnight, so that the day does not change during the test.
    let day_of = |t: std::time::SystemTime| {
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // 1970-01-01 was a Thursday.
        ((secs / 86_400 + 3) % 7, secs % 86_400)
    };
    if day_of(std::time::SystemTime::now()).1 > 86_400 - 60 {
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let today = days[day_of(std::time::SystemTime::now()).0 as usize];
    let others: Vec<String> = days
        .iter()
        .filter(|d| **d != today)
        .map(|d| format!("{d:?}"))
        .collect();
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        (
            "etl".into(),
            "connections = [\"ehr\"]\ngroups = [\"jit\"]".into(),
        ),
        (
            "etl2".into(),
            "connections = [\"ehr\"]\ngroups = [\"jit2\"]".into(),
        ),
        (
            "alice".into(),
            "kind = \"human\"\ngroups = [\"dba\"]".into(),
        ),
    ];
    let policy = |name: &str, group: &str, days: &str| {
        format!(
            r#"
[[policies]]
name = "{name}"
groups = ["{group}"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session"]
relations = ["*"]
[policies.approval]
approver_groups = ["dba"]
allowed_hours = {{ weekdays = [{days}], timezone = "UTC" }}
"#
        )
    };
    cfg.policies = policy("closed-today", "jit", &others.join(", "))
        + &policy("open-today", "jit2", &format!("{today:?}"));
    let vigil = Vigil::start(&cfg);
    let create = |identity: &str| {
        let (ok, out) = cli(
            &cfg,
            &vigil,
            &[
                "request",
                "create",
                "--identity",
                identity,
                "--connection",
                "ehr",
                "--reason",
                "hours",
            ],
        );
        assert!(ok, "{out}");
        out.lines()
            .find_map(|l| l.strip_prefix("request     "))
            .unwrap()
            .trim()
            .to_string()
    };
    let outside = create("etl");
    let inside = create("etl2");
    let store = cfg.store_path();

    // Outside the window: refused with a clear error, nothing recorded, still pending.
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request", "approve", &outside, "--reason", "now", "--as", "alice",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("outside the rule's allowed hours"), "{out}");
    let (status, body) = api(
        &vigil,
        ADMIN_TOKEN,
        reqwest::Method::POST,
        &format!("/api/v1/access-requests/{outside}/approve"),
        Some(json!({"reason": "now", "as": "alice"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(records_of(&store, "AccessDecided").is_empty());
    assert!(records_of(&store, "GrantIssued").is_empty());
    assert_eq!(
        show(&vigil, ADMIN_TOKEN, &outside).await["status"],
        "pending"
    );

    // Inside: accepted, and the grant issued.
    let (ok, out) = cli(
        &cfg,
        &vigil,
        &[
            "request", "approve", &inside, "--reason", "now", "--as", "alice",
        ],
    );
    assert!(ok && out.contains("approved"), "{out}");
    let decided = records_of(&store, "AccessDecided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["request_id"], inside.as_str());
    assert_eq!(records_of(&store, "GrantIssued").len(), 1);
}
