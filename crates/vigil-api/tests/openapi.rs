//! docs/openapi.json describes the server exactly: every route it answers is in the file and
//! every path in the file is answered, with a documented status; export rows have the fields
//! and types of their schemas. And only the auditor role exports and reads replay captures,
//! which are checked against their session's end record before they are served.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sha2::Digest;
use std::sync::Arc;
use tower::ServiceExt;
use vigil_audit::export::{Artifact, ColumnType};
use vigil_audit::{wait_durable, AuditOptions, AuditWriter, SigningKey};
use vigil_core::event::{
    ProtocolPath, SessionEndReason, SessionEnded, SessionStarted, StatementFinished,
    StatementShape, StatementStarted, StatementStatus,
};
use vigil_core::{
    AuthMethod, Event, EventDraft, IdentityKind, Principal, SecretString, SessionId, Timestamp,
};

const ADMIN: &str = "admin-token-for-tests";
const AUDITOR: &str = "auditor-token-for-tests";

fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The paths the router declares, read from its source (`.route("PATH", ...)`).
fn routes_in_source() -> Vec<String> {
    let src = include_str!("../src/lib.rs");
    let mut out: Vec<String> = src
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    out.sort();
    out
}

struct Fixture {
    replay_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
    router: axum::Router,
    session: SessionId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        vigil_store::open(
            &dir.path().join("vigil.db").display().to_string(),
            Default::default(),
        )
        .unwrap(),
    );
    let key = SigningKey::from_bytes(&[9; 32]);
    let writer = AuditWriter::start(store.clone(), AuditOptions::new(key.clone())).unwrap();
    let session = SessionId::new();
    let principal = Arc::new(Principal {
        name: "etl".into(),
        kind: IdentityKind::Machine,
        auth_method: AuthMethod::ServiceToken,
        issuer: None,
        subject: None,
        credential_id: Some("tok".into()),
    });
    let draft = |event| EventDraft {
        at: Timestamp::now(),
        session_id: Some(session),
        identity: Some(principal.clone()),
        connection: Some("ehr".into()),
        event,
    };
    wait_durable(writer.append(draft(Event::SessionStarted(SessionStarted {
        protocol: "postgres".into(),
        client_addr: "127.0.0.1:5000".into(),
        application_name: Some("psql".into()),
        client_tls: false,
        upstream: "127.0.0.1:5432/ehr".into(),
        upstream_user: "vigil".into(),
        upstream_tls: false,
        upstream_pid: Some(7),
        grants: Vec::new(),
    }))))
    .unwrap();
    wait_durable(
        writer.append(draft(Event::StatementStarted(StatementStarted {
            statement_seq: 1,
            protocol: ProtocolPath::from_static("simple"),
            shape: Arc::new(StatementShape {
                text: "SELECT $1".into(),
                fingerprint: "0123456789abcdef".into(),
                commands: vec!["SELECT".into()],
                command_classes: vec!["read".into()],
                objects: Vec::new(),
                parse_error: None,
            }),
            prepared_statement: None,
            parameters: None,
            grant_id: None,
            request_id: None,
            executed: Vec::new(),
        }))),
    )
    .unwrap();
    wait_durable(
        writer.append(draft(Event::StatementFinished(StatementFinished {
            statement_seq: 1,
            status: StatementStatus::Ok,
            sqlstate: None,
            command_tags: vec!["SELECT 1".into()],
            rows: 1,
            bytes: 10,
            duration_us: 5,
            result_digest: "00".repeat(32),
            rows_withheld: 0,
            values_withheld: 0,
            values_masked: 0,
        }))),
    )
    .unwrap();
    // The session's capture, and its digest in the end record.
    let replay_dir = dir.path().join("replay");
    std::fs::create_dir(&replay_dir).unwrap();
    let capture = format!(
        "{{\"format\":\"vigil-replay/1\",\"session_id\":\"{session}\",\"identity\":\"etl\",\
         \"identity_kind\":\"machine\",\"connection\":\"ehr\",\"client_addr\":\"127.0.0.1:5000\",\
         \"started_at\":\"2026-11-28T14:51:16.684265Z\"}}\n\
         {{\"t\":1670,\"d\":\"c\",\"b\":\"UQAAAA1TRUxFQ1QgMQA=\"}}\n\
         {{\"end\":\"2026-11-28T14:51:16.721062Z\",\"reason\":\"client_terminated\"}}\n"
    );
    std::fs::write(replay_dir.join(format!("{session}.jsonl")), &capture).unwrap();
    wait_durable(writer.append(draft(Event::SessionEnded(SessionEnded {
        reason: SessionEndReason::ClientTerminated,
        started_at: Timestamp::now(),
        duration_us: 10,
        statements: 1,
        errors: 0,
        rows: 1,
        bytes_to_client: 10,
        bytes_from_client: 10,
        refused: 0,
        interrupted: 0,
        masked: Default::default(),
        replay_sha256: Some(hex::encode(sha2::Sha256::digest(capture.as_bytes()))),
        replay_file_sha256: None,
        replay_truncated: None,
    }))))
    .unwrap();
    writer.shutdown().unwrap();
    let state = vigil_api::ApiState {
        audit: store.clone(),
        sessions: store.clone(),
        grants: store.clone(),
        requests: store,
        verifying_key: key.verifying_key(),
        anchor_path: None,
        admin_token: SecretString::new(ADMIN.into()),
        auditor_token: Some(SecretString::new(AUDITOR.into())),
        replay_dir: Some(replay_dir.clone()),
        access_requests: None,
    };
    Fixture {
        replay_dir,
        _dir: dir,
        router: vigil_api::router(state),
        session,
    }
}

async fn get(
    router: &axum::Router,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ctype, body.to_vec())
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_a_route() {
    let doc = openapi();
    let mut documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    assert_eq!(routes_in_source(), documented);
}

#[tokio::test]
async fn every_documented_operation_answers_with_a_documented_status() {
    let fx = fixture();
    let doc = openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Access requests need the gateway's approval service, which this fixture does not
        // have: those routes must answer a documented 404 (gateway_approval tests them live).
        let needs_approvals =
            item.get("x-vigil-requires").and_then(Value::as_str) == Some("approvals");
        for (method, op) in item.as_object().unwrap() {
            if method.starts_with("x-") {
                continue;
            }
            if needs_approvals {
                let uri = path.replace("{id}", "r-1").replace("{action}", "approve");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("authorization", format!("Bearer {AUDITOR}"))
                    .header("content-type", "application/json")
                    .body(Body::from(
                        match (method.as_str(), path.ends_with("{action}")) {
                            ("post", true) => "{\"reason\":\"r\"}",
                            ("post", false) => "{\"connection\":\"ehr\",\"reason\":\"r\"}",
                            _ => "",
                        },
                    ))
                    .unwrap();
                let status = fx.router.clone().oneshot(req).await.unwrap().status();
                assert!(
                    op["responses"].get(status.as_str()).is_some(),
                    "{method} {uri}: {status} is not documented"
                );
                continue;
            }
            assert_eq!(
                method, "get",
                "only the access-request routes change anything"
            );
            let concrete: Vec<String> = if path.contains("{artifact}") {
                Artifact::ALL
                    .iter()
                    .map(|a| path.replace("{artifact}", a.as_str()))
                    .collect()
            } else {
                vec![path.replace("{id}", &fx.session.to_string())]
            };
            for uri in concrete {
                let (status, _, body) = get(&fx.router, &uri, Some(AUDITOR)).await;
                let documented = op["responses"].get(status.as_str()).is_some();
                assert!(
                    documented,
                    "{uri}: {status} is not documented: {}",
                    String::from_utf8_lossy(&body)
                );
                assert!(status.is_success(), "{uri}: {status}");
                let secured = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if secured {
                    let (status, _, _) = get(&fx.router, &uri, None).await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} without a token");
                    assert!(op["responses"].get("401").is_some());
                }
            }
        }
    }
    // A path the file does not have is not answered.
    for uri in [
        "/api/v1/exports",
        "/api/v1/replay",
        "/api/v1/exports/sessions/x",
    ] {
        assert_eq!(
            get(&fx.router, uri, Some(AUDITOR)).await.0,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    let Some(types) = schema.get("type") else {
        return true; // any JSON
    };
    let names: Vec<&str> = match types {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    names.iter().any(|t| match *t {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "boolean" => value.is_boolean(),
        "array" => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        "object" => value.is_object(),
        _ => false,
    })
}

#[tokio::test]
async fn export_rows_have_exactly_the_fields_and_types_of_their_schemas() {
    let fx = fixture();
    let doc = openapi();
    let op = &doc["paths"]["/api/v1/exports/{artifact}"]["get"];
    for artifact in Artifact::ALL {
        let reference = op["responses"]["200"]["x-vigil-row-schemas"][artifact.as_str()]
            .as_str()
            .unwrap();
        let name = reference.rsplit('/').next().unwrap();
        let schema = &doc["components"]["schemas"][name];
        // `required` lists every column in order (JSON objects here do not keep key order).
        let props: Vec<(&String, &Value)> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| {
                let name = name.as_str().unwrap();
                schema["properties"]
                    .as_object()
                    .unwrap()
                    .get_key_value(name)
                    .unwrap()
            })
            .collect();
        assert_eq!(props.len(), schema["properties"].as_object().unwrap().len());
        // The schema is the artifact's columns, in order, with their types.
        let columns = artifact.columns();
        // A new column goes into components.schemas.<Artifact>Row: `properties` and, in
        // column order, `required` (docs/EVIDENCE.md documents it too).
        assert_eq!(
            props.len(),
            columns.len(),
            "{artifact}: docs/openapi.json's row schema and the artifact's columns differ"
        );
        for ((pname, pschema), column) in props.iter().zip(columns) {
            assert_eq!(pname.as_str(), column.name, "{artifact}");
            let expected = match column.ty {
                ColumnType::Text | ColumnType::Time => Some("string"),
                ColumnType::Integer => Some("integer"),
                ColumnType::Bool => Some("boolean"),
                ColumnType::List => Some("array"),
                ColumnType::Json => None,
            };
            let first = pschema.get("type").map(|t| match t {
                Value::Array(a) => a[0].as_str().unwrap(),
                other => other.as_str().unwrap(),
            });
            assert_eq!(first, expected, "{artifact}.{pname}");
        }
        for format in ["json", "jsonl"] {
            let (status, ctype, body) = get(
                &fx.router,
                &format!("/api/v1/exports/{artifact}?format={format}&since=1h"),
                Some(AUDITOR),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                op["responses"]["200"]["content"]
                    .get(ctype.as_str())
                    .is_some(),
                "{ctype}"
            );
            let rows: Vec<Value> = if format == "json" {
                serde_json::from_slice(&body).unwrap()
            } else {
                body.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect()
            };
            if matches!(artifact, Artifact::Sessions | Artifact::Statements) {
                assert_eq!(rows.len(), 1, "{artifact}");
            }
            for row in rows {
                let obj = row.as_object().unwrap();
                assert_eq!(obj.len(), props.len());
                for (pname, pschema) in &props {
                    let value = obj
                        .get(pname.as_str())
                        .unwrap_or_else(|| panic!("{artifact}: no {pname}"));
                    assert!(type_matches(pschema, value), "{artifact}.{pname} = {value}");
                }
            }
        }
    }
}

#[tokio::test]
async fn only_the_auditor_exports() {
    let fx = fixture();
    let exports = "/api/v1/exports/statements";
    let (status, _, body) = get(&fx.router, exports, Some(ADMIN)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the admin token is not an auditor"
    );
    assert!(String::from_utf8_lossy(&body).contains("auditor"));
    for token in [Some("guess"), None] {
        assert_eq!(
            get(&fx.router, exports, token).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        get(&fx.router, exports, Some(AUDITOR)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&fx.router, "/api/v1/sessions", Some(ADMIN)).await.0,
        StatusCode::OK
    );
    for (uri, status) in [
        ("/api/v1/exports/nope", StatusCode::NOT_FOUND),
        (
            "/api/v1/exports/statements?format=xml",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/exports/statements?since=yesterday",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(get(&fx.router, uri, Some(AUDITOR)).await.0, status, "{uri}");
    }
    let (status, ctype, body) = get(
        &fx.router,
        "/api/v1/exports/statements?format=csv",
        Some(AUDITOR),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    assert!(String::from_utf8_lossy(&body).starts_with("seq,hash,at,session_id,statement_seq,"));
}

async fn get_headers(
    router: &axum::Router,
    uri: &str,
    token: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, body.to_vec())
}

#[tokio::test]
async fn only_the_auditor_reads_replays_and_only_as_the_chain_recorded_them() {
    let fx = fixture();
    let uri = format!("/api/v1/sessions/{}/replay", fx.session);
    let file = fx.replay_dir.join(format!("{}.jsonl", fx.session));
    let recorded = std::fs::read(&file).unwrap();

    // Captures hold PHI in clear: the admin role does not read them.
    let (status, _, body) = get(&fx.router, &uri, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("auditor"));
    assert_eq!(
        get(&fx.router, &uri, None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, headers, body) = get_headers(&fx.router, &uri, AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, recorded, "the file, byte for byte");
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["vigil-replay-status"], "verified");
    assert_eq!(
        headers["vigil-replay-sha256"].to_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&recorded))
    );

    let (status, headers, body) =
        get_headers(&fx.router, &format!("{uri}?format=pcapng"), AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        &body[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "a pcapng section header"
    );
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .ends_with(".pcapng\""));

    for (uri, status) in [
        (format!("{uri}?format=pcap"), StatusCode::BAD_REQUEST),
        (
            format!("/api/v1/sessions/{}/replay", SessionId::new()),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/sessions/..%2Fvigil.db/replay".into(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(
            get(&fx.router, &uri, Some(AUDITOR)).await.0,
            status,
            "{uri}"
        );
    }

    // An edited capture is refused, and says why.
    std::fs::write(
        &file,
        String::from_utf8(recorded.clone())
            .unwrap()
            .replace("\"d\":\"c\"", "\"d\":\"s\""),
    )
    .unwrap();
    let (status, _, body) = get(&fx.router, &uri, Some(AUDITOR)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("does not match its end record"), "{body}");
    // A removed one is named as such.
    std::fs::remove_file(&file).unwrap();
    let (status, _, body) = get(&fx.router, &uri, Some(AUDITOR)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("removed"));
}

#[tokio::test]
async fn an_encrypted_capture_is_never_served_and_the_refusal_says_how_to_read_it() {
    let fx = fixture();
    let plain = fx.replay_dir.join(format!("{}.jsonl", fx.session));
    let sealed = fx.replay_dir.join(format!("{}.jsonl.gz.age", fx.session));
    std::fs::rename(&plain, &sealed).unwrap();
    for format in ["", "?format=pcapng"] {
        let uri = format!("/api/v1/sessions/{}/replay{format}", fx.session);
        let (status, ctype, body) = get(&fx.router, &uri, Some(AUDITOR)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{format}");
        assert_eq!(ctype, "application/json");
        let error: Value = serde_json::from_slice(&body).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains("encrypted at rest"), "{message}");
        assert!(
            message.contains(&format!("vigil replay {} --identity FILE", fx.session)),
            "{message}"
        );
        assert!(!message.contains("SELECT"), "{message}");
    }
    // The admin role is refused first, as for any capture.
    let uri = format!("/api/v1/sessions/{}/replay", fx.session);
    assert_eq!(
        get(&fx.router, &uri, Some(ADMIN)).await.0,
        StatusCode::FORBIDDEN
    );
}
